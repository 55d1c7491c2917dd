package extauthz

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/policy"
)

// allow builds the OK answer: identity headers overwritten (never appended), every other
// identity header and every header the route does not allow removed, and the dynamic
// metadata the rate-limit descriptors read.
func (s *server) allow(pol *routePolicy, headers map[string]string, id *verify.Identity, addr string) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	for i, h := range s.verifier.ClaimHeaders() {
		if id != nil && id.Headers[i] != "" {
			ok.Headers = append(ok.Headers, overwrite(h.Name, id.Headers[i]))
		} else {
			ok.HeadersToRemove = append(ok.HeadersToRemove, h.Lower)
		}
	}
	n := len(ok.HeadersToRemove)
	for name := range headers {
		if s.verifier.Dropped(&pol.Route, name) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	}
	slices.Sort(ok.HeadersToRemove[n:])

	ip := policy.AnonymousClient(addr)
	subject, client := "", ip
	if id != nil {
		subject = id.Subject
		if id.Client != "" {
			client = id.Client
		}
	}
	fields := make(map[string]*structpb.Value, 2+len(pol.limitHdrs))
	fields[policy.MetaSubject] = structpb.NewStringValue(subject)
	fields[policy.MetaClient] = structpb.NewStringValue(client)
	if id != nil && id.Plan != "" { // absent: the rate limits' descriptor says no plan
		fields[policy.MetaPlan] = structpb.NewStringValue(id.Plan)
	}
	for i, h := range pol.limitHdrs {
		// "h:" keeps a client's header value from naming another bucket, e.g. "ip:<addr>".
		v := ip
		if hv := headers[h]; hv != "" {
			v = "h:" + hv
		}
		fields[pol.limitMetas[i]] = structpb.NewStringValue(v)
	}
	if c := s.edgeCache(pol, id, ok.Headers, ok.HeadersToRemove[:n]); c != nil {
		fields[policy.MetaCache] = c
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: &structpb.Struct{Fields: fields},
	}
}

// edgeCache offers this allow to the edge decision cache (policy.MetaCache): the identity
// headers to set and to remove, reusable for the TTL but never past the token's exp. An allow
// that depends on more than the token and the route is not offered: an anonymous one, a client
// key that falls back to the address, a header:<Name> rate-limit key read from the request.
func (s *server) edgeCache(pol *routePolicy, id *verify.Identity, set []*corev3.HeaderValueOption, del []string) *structpb.Value {
	// Not offered: routes that take API keys (a key sent beside a cached token must still be
	// checked and removed) and allows that carry a quota plan (the cache replays no plan).
	if s.edgeTTL <= 0 || id == nil || id.Client == "" || len(pol.limitHdrs) > 0 || pol.keys || id.Plan != "" {
		return nil
	}
	ttl := min(s.edgeTTL, id.Exp.Sub(s.now()))
	if ttl < time.Millisecond {
		return nil
	}
	setv := make(map[string]*structpb.Value, len(set))
	for _, h := range set {
		setv[strings.ToLower(h.Header.Key)] = structpb.NewStringValue(h.Header.Value)
	}
	delv := make([]*structpb.Value, len(del))
	for i, name := range del {
		delv[i] = structpb.NewStringValue(name)
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"ttl_ms": structpb.NewNumberValue(float64(ttl.Milliseconds())),
		"set":    structpb.NewStructValue(&structpb.Struct{Fields: setv}),
		"del":    structpb.NewListValue(&structpb.ListValue{Values: delv}),
	}})
}

// Denials. Bodies say what the client must do, never why internally.
var (
	deniedMissing = denied(http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid_token", "an access token is required")
	deniedInvalid = denied(http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid_token", "the access token is invalid")
	deniedRevoked = deniedByReason[reasonRevoked]
	policyError   = denied(http.StatusForbidden, "", "access_denied", "this route is not available")
	// deniedQueryToken: RFC 6750 §2.3 allows the query only where the resource server says so.
	deniedQueryToken = denied(http.StatusBadRequest, `Bearer error="invalid_request"`, "invalid_request",
		"this operation does not take an access_token query parameter: send the token in the Authorization header")
	// deniedUnavailable is a 503: the client may retry; nothing is wrong with its token.
	deniedUnavailable = denied(http.StatusServiceUnavailable, "", "temporarily_unavailable", "authorization is starting; retry shortly")
)

func insufficientScope(r policy.Route) *authv3.CheckResponse {
	var first []string
	alts := make([][]string, 0, len(r.AnyOf))
	for _, req := range r.AnyOf {
		if first == nil {
			first = req.Scopes
		}
		alts = append(alts, req.Scopes)
	}
	hdr := `Bearer error="insufficient_scope"`
	if len(first) > 0 {
		hdr += fmt.Sprintf(`, scope="%s"`, strings.Join(first, " "))
	}
	body, _ := json.Marshal(map[string]any{
		"error":             "insufficient_scope",
		"error_description": "the access token lacks the scopes this route requires",
		"required_scopes":   alts, // any one of these sets
	})
	return deniedResponse(http.StatusForbidden, hdr, string(body))
}

func denied(code int, wwwAuth, errCode, desc string) *authv3.CheckResponse {
	body, _ := json.Marshal(map[string]string{"error": errCode, "error_description": desc})
	return deniedResponse(code, wwwAuth, string(body))
}

// deniedResponse is shared between requests: gRPC only reads it while marshalling.
func deniedResponse(code int, wwwAuth, body string) *authv3.CheckResponse {
	grpcCode := codes.PermissionDenied
	switch code {
	case http.StatusUnauthorized:
		grpcCode = codes.Unauthenticated
	case http.StatusServiceUnavailable:
		grpcCode = codes.Unavailable
	}
	hs := []*corev3.HeaderValueOption{overwrite("content-type", "application/json")}
	if wwwAuth != "" {
		hs = append(hs, overwrite("www-authenticate", wwwAuth))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: hs,
			Body:    body,
		}},
	}
}

// overwrite sets a header, replacing any value the request or response had.
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
