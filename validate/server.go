package validate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/policy"
)

// Processor is Envoy's external processor for the routes of operations that validate
// requests: one stream per request, the headers and the buffered body (if any) in, "go on" or
// a 400/415 problem out. Each stream's gRPC metadata names the operation
// (policy.ValidateSchema and the others).
type Processor struct {
	extprocv3.UnimplementedExternalProcessorServer
	schemas *Schemas
	m       *metrics
	log     *slog.Logger
	// wait bounds how long a stream waits for a description the control plane has not sent
	// yet; Envoy's own timeout (validation.timeout) is shorter by default.
	wait time.Duration
}

// NewProcessor checks requests against the descriptions of schemas.
func NewProcessor(schemas *Schemas, m *metrics, log *slog.Logger) *Processor {
	return &Processor{schemas: schemas, m: m, log: log, wait: 2 * time.Second}
}

// Process serves one request's stream. A stream it cannot serve (no operation named, a
// description it does not have) ends with an error: Envoy then fails the request closed (503
// validation_unavailable) unless validation.failOpen.
func (p *Processor) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	one := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	route := one(policy.ValidateRoute)
	key := opKey{path: one(policy.ValidatePath), template: one(policy.ValidateTemplate)}
	hash := one(policy.ValidateSchema)
	if hash == "" || key.path == "" || key.template == "" {
		return status.Error(codes.InvalidArgument, "the stream names no operation (x-specgate-schema, -path, -template)")
	}
	var headers *corev3.HeaderMap
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var body []byte
		switch {
		case req.GetRequestHeaders() != nil:
			headers = req.GetRequestHeaders().GetHeaders()
			// A body follows, buffered whole (the route's processing mode): check it all then.
			if !req.GetRequestHeaders().GetEndOfStream() {
				if err := stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
					RequestHeaders: &extprocv3.HeadersResponse{}}}); err != nil {
					return err
				}
				continue
			}
		case req.GetRequestBody() != nil:
			body = req.GetRequestBody().GetBody()
			if body == nil {
				body = []byte{}
			}
		default:
			return status.Errorf(codes.FailedPrecondition, "unexpected message %T: the route's processing mode sends request headers and body only", req.GetRequest())
		}
		began := time.Now()
		out, err := p.check(ctx, hash, key, headers, body)
		result := resultValid
		switch {
		case err != nil:
			result = resultError
		case out.Status != 0:
			result = resultInvalid
		}
		p.m.observe(route, result, time.Since(began))
		if err != nil {
			p.log.Warn("request not checked", "route", route, "err", err)
			return status.Error(codes.Unavailable, err.Error())
		}
		resp := p.answer(req, out)
		resp.DynamicMetadata = resultMetadata[result]
		return stream.Send(resp)
	}
}

func (p *Processor) check(ctx context.Context, hash string, key opKey, h *corev3.HeaderMap, body []byte) (Outcome, error) {
	wctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	d, err := p.schemas.get(wctx, hash)
	if err != nil {
		return Outcome{}, err
	}
	req, err := request(ctx, h)
	if err != nil { // the client's request line, not the processor's failure
		return Outcome{Status: http.StatusBadRequest, Problems: []Problem{{Detail: err.Error()}}}, nil
	}
	key.method = req.Method
	op, err := d.operation(key)
	if err != nil {
		return Outcome{}, err
	}
	return op.check(ctx, req, body)
}

// request rebuilds the HTTP request from Envoy's headers (pseudo-headers included).
func request(ctx context.Context, h *corev3.HeaderMap) (*http.Request, error) {
	req := &http.Request{Header: http.Header{}, Body: http.NoBody}
	var path, authority string
	for _, hv := range h.GetHeaders() {
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		switch hv.GetKey() {
		case ":method":
			req.Method = v
		case ":path":
			path = v
		case ":authority":
			authority = v
		default:
			if !strings.HasPrefix(hv.GetKey(), ":") {
				req.Header.Add(hv.GetKey(), v)
			}
		}
	}
	u, err := url.ParseRequestURI(path)
	if req.Method == "" || err != nil {
		return nil, fmt.Errorf("request without a method or a path (%q)", path)
	}
	req.URL, req.Host, req.RequestURI = u, authority, path
	return req.WithContext(ctx), nil
}

const problemType = "application/problem+json"

// resultMetadata is the dynamic metadata of each answer, for Envoy's access log and traces.
var resultMetadata = map[string]*structpb.Struct{
	resultValid:   resultStruct(resultValid),
	resultInvalid: resultStruct(resultInvalid),
}

func resultStruct(r string) *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{policy.ValidateNamespace: map[string]any{policy.MetaResult: r}})
	return s
}

// answer lets the request go on, or refuses it with an RFC 9457 problem document that keeps
// the gateway's {"error", "status"} fields.
func (p *Processor) answer(req *extprocv3.ProcessingRequest, out Outcome) *extprocv3.ProcessingResponse {
	if out.Status == 0 {
		if req.GetRequestBody() != nil {
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	}
	code, title := "invalid_request", "The request does not match the API description"
	if out.Status == http.StatusUnsupportedMediaType {
		code, title = "unsupported_media_type", "The API description does not describe this content type"
	}
	body, _ := json.Marshal(struct {
		Type     string    `json:"type"`
		Title    string    `json:"title"`
		Status   int       `json:"status"`
		Error    string    `json:"error"`
		Problems []Problem `json:"errors"`
	}{"urn:specgate:problem:" + strings.ReplaceAll(code, "_", "-"), title, out.Status, code, out.Problems})
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(out.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", RawValue: []byte(problemType)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}},
		Body:    body,
		Details: "validation_" + code,
	}}}
}
