package envoy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// With gateway.yaml tracing, one request through the real Envoy is one trace: Envoy's ingress
// span (named after the route, with authz's decision), its calls to authz and ratelimit as
// child spans, the server spans of both roles under them (continued from the gRPC call's
// traceparent by OpenTelemetry's grpc instrumentation) with their own spans under those, and
// the backend receives the same trace id. A client's traceparent is continued. No token
// appears in any span, nor in the access log.
func TestTracingAcrossEnvoyAuthzRatelimit(t *testing.T) {
	otlp := e2e.StartOTLP(t)
	s := newGateway(t, func(g *config.Gateway) {
		g.Tracing = config.Tracing{OTLP: otlp.Addr, Sampling: 1, GCPProject: "shop-prod"}
		g.AccessLog = config.AccessLog{Format: "json"}
	})
	tok := s.Token("trace-alice", "orders:read")

	// listOrders has a per-client quota: authz and ratelimit both take part.
	if code := s.get("/shop/orders", tok, nil).StatusCode; code != 200 {
		t.Fatalf("GET /shop/orders: %d", code)
	}
	tp := s.backend.Last().Header.Get("Traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		t.Fatalf("the backend got traceparent %q", tp)
	}
	traceID := parts[1]
	var spans []e2e.Span
	bySvc := map[string][]e2e.Span{}
	var root *e2e.Span // Envoy's ingress span: it ends last, after the response
	testutil.Eventually(t, 20*time.Second, "spans of Envoy, authz and ratelimit in one trace", func() bool {
		spans, bySvc, root = otlp.Spans(traceID), map[string][]e2e.Span{}, nil
		for _, sp := range spans {
			bySvc[sp.Service] = append(bySvc[sp.Service], sp)
			if sp.Service == translate.ServiceEnvoy && sp.ParentID() == "" {
				root = &sp
			}
		}
		return root != nil && len(bySvc["specgate-authz"]) >= 3 && len(bySvc["specgate-ratelimit"]) >= 2
	})
	ids := map[string]e2e.Span{}
	for _, sp := range spans {
		ids[sp.SpanID()] = sp
	}
	describe := func() string {
		var b strings.Builder
		for _, sp := range spans {
			fmt.Fprintf(&b, "\n  %s %s %s parent %s", sp.Service, sp.Name, sp.SpanID(), sp.ParentID())
		}
		return b.String()
	}
	// The ingress span: the trace's root, named after the route, with authz's answer.
	if root.Name != "shop.listOrders" || root.Attr("specgate.route") != "shop.listOrders" ||
		root.Attr("specgate.authz.decision") != "allow" || root.Attr("specgate.authz.reason") != "ok" {
		t.Fatalf("no ingress span named shop.listOrders with authz's decision as root:%s", describe())
	}
	// Each role's server span hangs under a span of Envoy's; each role's own spans under it.
	for _, svc := range []string{"specgate-authz", "specgate-ratelimit"} {
		server := serverSpan(bySvc, svc)
		if server == nil || ids[server.ParentID()].Service != translate.ServiceEnvoy {
			t.Errorf("%s: no span whose parent is Envoy's:%s", svc, describe())
			continue
		}
		if server.Attr("specgate.route") != "shop.listOrders" {
			t.Errorf("%s: server span %s lacks the route: %v", svc, server.Name, server.Attributes)
		}
		want := map[string][]string{"specgate-authz": {"authz.verify_token", "authz.revocation_lookup"}, "specgate-ratelimit": {"ratelimit.store"}}[svc]
		for _, name := range want {
			found := false
			for _, sp := range bySvc[svc] {
				found = found || sp.Name == name && sp.ParentID() == server.SpanID()
			}
			if !found {
				t.Errorf("%s: no %s span under the server span %s:%s", svc, name, server.SpanID(), describe())
			}
		}
	}
	if d := serverSpan(bySvc, "specgate-authz"); d != nil && d.Attr("specgate.authz.decision") != "allow" {
		t.Errorf("authz's server span: decision %q", d.Attr("specgate.authz.decision"))
	}

	// A client's traceparent is continued: same trace id at the backend, Envoy's span its child.
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if code := s.get("/shop/orders", tok, map[string]string{"Traceparent": "00-" + clientTrace + "-" + clientSpan + "-01"}).StatusCode; code != 200 {
		t.Fatalf("with a traceparent: %d", code)
	}
	if got := s.backend.Last().Header.Get("Traceparent"); !strings.Contains(got, clientTrace) {
		t.Errorf("the backend got traceparent %q, want trace %s", got, clientTrace)
	}
	testutil.Eventually(t, 20*time.Second, "Envoy's span under the client's", func() bool {
		for _, sp := range otlp.Spans(clientTrace) {
			if sp.Service == translate.ServiceEnvoy && sp.ParentID() == clientSpan {
				return true
			}
		}
		return false
	})

	// Never the token, in spans or in the access log; the log links each line to its trace.
	if d := otlp.Dump(); strings.Contains(d, tok) || strings.Contains(strings.ToLower(d), "bearer") {
		t.Errorf("a span holds the token or an Authorization value")
	}
	// Envoy writes its access log in batches: wait for the line.
	testutil.Eventually(t, 10*time.Second, "an access-log line with the trace id and Cloud Logging's trace field", func() bool {
		for _, l := range strings.Split(s.Envoy.Log(), "\n") {
			var line map[string]any
			if json.Unmarshal([]byte(l), &line) == nil && line["traceId"] == traceID {
				return line["logging.googleapis.com/trace"] == "projects/shop-prod/traces/"+traceID
			}
		}
		return false
	})
	if strings.Contains(s.Envoy.Log(), tok) { // with the request's lines written
		t.Errorf("Envoy's log holds the token")
	}
	for _, p := range slices.Concat([]*stack.Proc{s.XDS}, s.Authz, s.RateLimit) {
		if strings.Contains(p.Log(), tok) {
			t.Errorf("%s's log holds the token", p.Name)
		}
	}
}

// serverSpan is the span of svc whose parent is not svc's own (its gRPC server span).
func serverSpan(bySvc map[string][]e2e.Span, svc string) *e2e.Span {
	own := map[string]bool{}
	for _, sp := range bySvc[svc] {
		own[sp.SpanID()] = true
	}
	for _, sp := range bySvc[svc] {
		if !own[sp.ParentID()] {
			return &sp
		}
	}
	return nil
}
