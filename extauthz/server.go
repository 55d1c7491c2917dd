package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/internal/tracing"
	"github.com/specgate/specgate/policy"
)

// server answers Envoy's ext_authz Check. It holds no per-route state: each request carries
// its route's policy in the context extensions.
type server struct {
	authv3.UnimplementedAuthorizationServer

	verifier *verify.Verifier
	keys     *keySource
	cache    *verify.Cache
	revoked  *revocation.Set
	m        *metrics
	log      *slog.Logger
	refusals *refusals
	// logDecisions adds the decision and reason to the dynamic metadata for Envoy's access
	// log; hashSubject adds the subject's hash (gateway.yaml accessLog).
	logDecisions, hashSubject bool
	// decisionSample of the Checks are logged, with the subject as decisionSubject says
	// (gateway.yaml authz.decisionLog).
	decisionSample  float64
	decisionSubject string
	now             func() time.Time
	xffHops         int           // gateway.yaml xffTrustedHops
	edgeTTL         time.Duration // gateway.yaml authz.decisionCacheTTL
	maxToken        int           // gateway.yaml authz.maxTokenBytes
	// deniedTooLarge says the size, not only "invalid": a token grown by roles is a
	// configuration matter, not an attack.
	deniedTooLarge *authv3.CheckResponse

	policies    sync.Map // raw ExtPolicy string -> *routePolicy
	policyCount atomic.Int64

	tracer trace.Tracer // spans of token verification and revocation lookups (gateway.yaml tracing)
}

var _ authv3.AuthorizationServer = (*server)(nil)

// deps are what newServer needs; tests fill them directly.
type deps struct {
	cfg             config.Gateway
	revoked         *revocation.Set
	log             *slog.Logger
	now             func() time.Time
	httpClient      *http.Client  // JWKS and discovery fetches
	refreshCooldown time.Duration // between forced JWKS refreshes of one issuer
	jwksMinInterval time.Duration // floor of the periodic JWKS refresh
	cacheSize       int
	tracer          trace.Tracer // nil: no spans
}

// Reasons of a decision beyond the token's own (verify.Reason*): the `reason` label of
// specgate_authz_checks_total. A small fixed set.
const (
	reasonOK             = "ok"
	reasonAnonymous      = "anonymous"
	reasonMissing        = "missing_token"
	reasonRevoked        = "revoked"
	reasonScope          = "insufficient_scope"
	reasonPolicy         = "policy_error"
	reasonQueryToken     = "query_token"
	reasonIssuerNotValid = "issuer_not_allowed"
	// reasonRevocationUnavailable: the revocation list has not loaded yet.
	reasonRevocationUnavailable = "revocations_unavailable"
)

func newServer(ctx context.Context, d deps) (*server, error) {
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.httpClient == nil {
		d.httpClient = &http.Client{Timeout: 5 * time.Second}
	}
	if d.refreshCooldown == 0 {
		d.refreshCooldown = time.Second
	}
	if d.jwksMinInterval == 0 {
		d.jwksMinInterval = 30 * time.Second
	}
	if d.cacheSize == 0 {
		d.cacheSize = 100_000
	}
	if d.tracer == nil {
		d.tracer = tracing.Off
	}
	if d.revoked == nil { // no store behind it: the empty set is the whole list
		d.revoked = revocation.NewSet(d.cfg.Revocation.ExpectedEntries, d.cfg.Revocation.FalsePositiveRate)
		d.revoked.Replace(nil, d.now())
	}
	m := newMetrics()
	// A Check that met an unknown kid waits for the JWKS at most half of Envoy's timeout for
	// authz, so that it still answers (401 unknown_key) before Envoy gives up on it; the
	// refresh goes on in the background for the next request.
	wait := min(time.Second, d.cfg.Authz.Timeout.Duration/2)
	keys, err := newKeySource(ctx, d.httpClient, d.refreshCooldown, d.jwksMinInterval, wait, m, d.log)
	if err != nil {
		return nil, err
	}
	keys.tracer = d.tracer
	s := &server{keys: keys, tracer: d.tracer, cache: verify.NewCache(d.cacheSize), revoked: d.revoked, m: m, log: d.log, now: d.now,
		refusals:     newRefusals(d.log, m.reg, d.now),
		logDecisions: d.cfg.AccessLog.Format != "", hashSubject: d.cfg.AccessLog.Subject == "hash",
		decisionSample: d.cfg.Authz.DecisionLog.Sample, decisionSubject: d.cfg.Authz.DecisionLog.Subject,
		xffHops: int(d.cfg.XFFTrustedHops), edgeTTL: d.cfg.Authz.DecisionCacheTTL.Duration}
	s.maxToken = d.cfg.Authz.MaxTokenBytes
	s.deniedTooLarge = denied(http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid_token",
		fmt.Sprintf("the access token is larger than %d bytes (gateway.yaml authz.maxTokenBytes)", s.maxToken))
	s.verifier = verify.New(&d.cfg, func(issuer, jwksURI string) verify.Keys { return keys.add(ctx, issuer, jwksURI) }, d.now)
	for _, is := range d.cfg.Issuers {
		ik := s.verifier.IssuerKeys(is.Issuer)
		m.gauge("specgate_authz_jwks_keys", "Keys currently held per issuer (0: never fetched).",
			map[string]string{"issuer": is.Issuer}, func() float64 {
				if set := ik.Keys(); set != nil {
					return float64(set.Len())
				}
				return 0
			})
	}
	m.gauge("specgate_authz_revocation_entries", "Live revocation entries.", nil,
		func() float64 { return float64(s.revoked.Len()) })
	m.gauge("specgate_authz_bloom_fill_ratio", "Share of the revocation bloom filter's bits set.", nil,
		s.revoked.FillRatio)
	m.gauge("specgate_authz_bloom_estimated_fp_rate", "Estimated false-positive rate of the bloom filter.", nil,
		s.revoked.EstimatedFPRate)
	return s, nil
}

func (s *server) close() { s.keys.close() }

// routePolicy is a decoded route policy with what every request of the route would
// otherwise recompute: its 403 answer and the rate-limit header names with their metadata keys.
type routePolicy struct {
	policy.Route
	err        error
	denied     *authv3.CheckResponse // insufficient scope
	limitHdrs  []string              // lower-case header names of header:<Name> keys
	limitMetas []string              // policy.MetaHeader of each
	// keys: a requirement takes an API key; keysOnly: every requirement does, and
	// missingKey answers a request without one.
	keys, keysOnly bool
	missingKey     *authv3.CheckResponse
}

// maxPolicies bounds the decoded-policy cache (a route table has a few thousand routes).
const maxPolicies = 50_000

func (s *server) routePolicy(raw string) *routePolicy {
	if p, ok := s.policies.Load(raw); ok {
		return p.(*routePolicy)
	}
	r, err := policy.Decode(raw)
	p := &routePolicy{Route: r, err: err}
	if err == nil {
		p.denied = insufficientScope(r)
		withKey := slices.ContainsFunc(r.AnyOf, func(q policy.Requirement) bool { return q.APIKey != nil })
		p.keys, p.keysOnly = withKey, withKey && !slices.ContainsFunc(r.AnyOf, func(q policy.Requirement) bool { return q.APIKey == nil })
		if p.keysOnly {
			p.missingKey = deniedMissingKey(r)
		}
		for _, h := range r.RateLimitHeaders {
			p.limitHdrs = append(p.limitHdrs, strings.ToLower(h))
			p.limitMetas = append(p.limitMetas, policy.MetaHeader(h))
		}
	}
	// Policies come from the compiled config, never from clients, but each push that changes
	// one adds an entry: start afresh when the map outgrows any real route table.
	if s.policyCount.Add(1) > maxPolicies {
		s.policies.Clear()
		s.policyCount.Store(1)
	}
	v, _ := s.policies.LoadOrStore(raw, p)
	return v.(*routePolicy)
}

// Check never returns an error for a bad request: every outcome is a CheckResponse, so
// Envoy answers 401/403 and never takes its failure path.
func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	attrs := req.GetAttributes()
	route := attrs.GetContextExtensions()[policy.ExtRoute]
	resp, reason := s.check(ctx, attrs)
	decision := "deny"
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		decision = "allow"
	}
	if s.logDecisions {
		resp = s.withDecision(resp, decision, reason)
	}
	s.m.checks.WithLabelValues(decision, reason, route).Inc()
	if span := trace.SpanFromContext(ctx); span.IsRecording() { // the gRPC server span
		span.SetAttributes(attribute.String("specgate.route", route),
			attribute.String("specgate.authz.decision", decision), attribute.String("specgate.authz.reason", reason))
	}
	took := time.Since(start)
	s.m.duration.Observe(took.Seconds())
	if s.decisionSample > 0 && rand.Float64() < s.decisionSample {
		s.logDecision(attrs, resp, route, decision, reason, took)
	}
	return resp, nil
}

// logDecision writes one sampled decision (gateway.yaml authz.decisionLog). The issuer and kid
// are read from the token, verified on an allow and not on a denial; the subject is an allow's.
func (s *server) logDecision(attrs *authv3.AttributeContext, resp *authv3.CheckResponse, route, decision, reason string, took time.Duration) {
	raw, _ := strings.CutPrefix(requestHeaders(attrs.GetRequest().GetHttp())["authorization"], "Bearer ")
	var c claims
	if raw != "" && len(raw) <= s.maxToken {
		c = describe(raw)
	}
	attrsOut := []any{"route", route, "decision", decision, "reason", reason, "iss", c.Iss, "kid", c.Kid,
		"latency_us", took.Microseconds()}
	sub := resp.GetDynamicMetadata().GetFields()[policy.MetaSubject].GetStringValue()
	switch {
	case sub == "" || decision != "allow" || s.decisionSubject == "omit":
	case s.decisionSubject == "hash":
		attrsOut = append(attrsOut, "subject_hash", subjectHash(sub))
	default:
		attrsOut = append(attrsOut, "subject", sub)
	}
	s.log.Info("decision", attrsOut...)
}

// subjectHash is how the access and decision logs show a subject when asked to hide it: the
// hex SHA-256 (policy.MetaSubjectHash).
func subjectHash(sub string) string {
	h := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(h[:])
}

// withDecision adds the decision and its reason to the dynamic metadata, for Envoy's access
// log (gateway.yaml accessLog), and the subject's hash when the log shows no more. An allow is
// built for this request; a denial is shared, so it is copied around new metadata.
func (s *server) withDecision(resp *authv3.CheckResponse, decision, reason string) *authv3.CheckResponse {
	if decision == "allow" {
		if resp.DynamicMetadata == nil {
			resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		f := resp.DynamicMetadata.Fields
		f[policy.MetaDecision] = structpb.NewStringValue(decision)
		f[policy.MetaReason] = structpb.NewStringValue(reason)
		if sub := f[policy.MetaSubject].GetStringValue(); s.hashSubject && sub != "" {
			f[policy.MetaSubjectHash] = structpb.NewStringValue(subjectHash(sub))
		}
		return resp
	}
	return &authv3.CheckResponse{Status: resp.Status, HttpResponse: resp.HttpResponse,
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			policy.MetaDecision: structpb.NewStringValue(decision),
			policy.MetaReason:   structpb.NewStringValue(reason),
		}}}
}

func (s *server) check(ctx context.Context, attrs *authv3.AttributeContext) (*authv3.CheckResponse, string) {
	pol := s.routePolicy(attrs.GetContextExtensions()[policy.ExtPolicy])
	if pol.err != nil {
		// Fail closed: a route whose policy we cannot read is never open.
		return policyError, reasonPolicy
	}
	if !pol.QueryToken && policy.HasQueryToken(attrs.GetRequest().GetHttp().GetPath()) {
		return deniedQueryToken, reasonQueryToken
	}
	headers := requestHeaders(attrs.GetRequest().GetHttp())
	addr := clientAddress(attrs, headers, s.xffHops)
	if pol.keys {
		if resp, reason, done := s.checkAPIKey(pol, headers, attrs.GetRequest().GetHttp().GetPath(), addr); done {
			return resp, reason
		}
	}
	auth, present := headers["authorization"]
	if pol.keysOnly { // no requirement takes a token: Authorization is no credential here
		if pol.Anonymous {
			return s.allow(pol, headers, nil, addr), reasonAnonymous
		}
		return pol.missingKey, reasonKeyMissing
	}
	if !present {
		if pol.Anonymous {
			return s.allow(pol, headers, nil, addr), reasonAnonymous
		}
		return deniedMissing, reasonMissing
	}
	// Look the token up before checking its syntax: the cache holds only tokens that passed
	// tokenSyntax and verification, so a hit needs neither again (the common case stays cheap).
	now := s.now()
	var (
		sum [32]byte
		id  *verify.Identity
	)
	raw, why := verify.SplitBearer(auth, s.maxToken)
	if why == "" {
		sum = revocation.TokenHash(raw)
		if id = s.cache.Get(&sum, now); id != nil && !id.KeyHeld() {
			id = nil // its key left the JWKS: verify again, which now fails
		}
	}
	if id != nil {
		s.m.cacheHit.Inc()
	} else {
		if why == "" {
			why = verify.Syntax(raw)
		}
		if why == verify.ReasonTooLarge {
			s.refusals.note("", why, nil)
			return s.deniedTooLarge, why
		}
		if why != "" {
			s.refusals.note("", why, nil)
			return deniedFor(why), why
		}
		s.m.cacheMiss.Inc()
		vctx, span := tracing.Child(ctx, s.tracer, "authz.verify_token")
		var err error
		id, err = s.verifier.Verify(vctx, raw)
		if err != nil {
			reason := verify.ReasonOf(err)
			if span.IsRecording() {
				span.SetAttributes(attribute.String("specgate.authz.reason", reason))
			}
			span.End()
			s.refusals.note(raw, reason, err)
			return deniedFor(reason), reason
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("specgate.token.issuer", id.Issuer))
		}
		span.End()
		id.Content = revocation.ContentHash(raw)
		s.cache.Put(&sum, id, now)
	}
	if !s.revoked.Loaded() {
		// Until the revocation list has loaded once, a revoked token would pass: refuse valid
		// tokens (503) rather than guess. A bad token is still a 401 (never a 5xx for a bad
		// token); anonymous requests without a token go on.
		return deniedUnavailable, reasonRevocationUnavailable
	}
	_, span := tracing.Child(ctx, s.tracer, "authz.revocation_lookup")
	revoked := s.revoked.Revoked(id.JTI, id.RevokedAs, &id.Content, &sum, id.IAT) ||
		// The second lookup: a subject revoked before a second issuer was trusted, by its
		// bare name, still refuses that subject's tokens from every issuer.
		id.RevokedAs != id.Subject && s.revoked.SubjectRevoked(id.Subject, id.IAT)
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("specgate.revoked", revoked))
	}
	span.End()
	if revoked {
		return deniedRevoked, reasonRevoked
	}
	if pol.Anonymous {
		return s.allow(pol, headers, id, addr), reasonOK
	}
	met, issuerOK := id.Meets(pol.AnyOf) // a key's requirement is checkAPIKey's
	if met {
		return s.allow(pol, headers, id, addr), reasonOK
	}
	if !issuerOK {
		return pol.denied, reasonIssuerNotValid
	}
	return pol.denied, reasonScope
}

// clientAddress is the trusted client address that the ip: rate-limit fall-backs count by,
// the same one Envoy's remote_address action uses. Envoy reports the connection's peer as the
// source; behind hops trusted proxies (a cloud load balancer) the client is further left in
// X-Forwarded-For, which Envoy has already extended with the peer: the (hops+1)-th entry from
// the right. Entries left of it are the client's own and never trusted.
func clientAddress(attrs *authv3.AttributeContext, headers map[string]string, hops int) string {
	peer := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
	if hops <= 0 {
		return peer
	}
	xff := strings.Split(headers["x-forwarded-for"], ",")
	if i := len(xff) - 1 - hops; i >= 0 {
		if a := strings.TrimSpace(xff[i]); a != "" {
			return a
		}
	}
	return peer
}

// requestHeaders returns the lower-case request headers. With encode_raw_headers Envoy
// sends header_map instead of headers; repeated headers are joined with "," as Envoy does.
func requestHeaders(h *authv3.AttributeContext_HttpRequest) map[string]string {
	if m := h.GetHeaders(); len(m) > 0 || h.GetHeaderMap() == nil {
		return m
	}
	m := map[string]string{}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		if old, ok := m[k]; ok {
			v = old + "," + v
		}
		m[k] = v
	}
	return m
}
