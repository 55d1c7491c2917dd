package envoy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// logLine is what the access log test reads of a line.
type logLine struct {
	HTTPRequest struct {
		RequestMethod, RequestURL, Latency, RemoteIP, UserAgent string
		Status                                                  int
	} `json:"httpRequest"`
	Route, ResponseFlags string
	DurationMs           *int
	Authz                struct {
		Decision, Reason, Subject string
		EdgeCache, Tokenless      *bool
	}
}

// With gateway.yaml accessLog: {format: json}, every request through Envoy writes one JSON
// line on its stdout: Cloud Logging's httpRequest (the path without its query), the route,
// and what authz decided and why, read from its dynamic metadata, on allows and denials.
// No token ever appears in it.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	b := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec},
		Vars: map[string]string{"PORT": b.Port(), "LIMIT": "100"}, NoRedis: true,
		Configure: func(c *config.Gateway) {
			c.AccessLog = config.AccessLog{Format: "json"}
			c.Authz.DecisionCacheTTL.Duration = 5 * time.Second
			c.Authz.Timeout.Duration = time.Second
		}})
	alice, bob := s.Token("alice", "orders:read"), s.Token("bob")
	for _, r := range []struct{ path, token string }{
		{"/shop/orders?card=4111111111111111", alice}, {"/shop/orders?again", alice}, {"/shop/orders", bob}, {"/shop/orders", ""},
		{"/shop/open", ""}, {"/nope", alice},
	} {
		req, _ := http.NewRequest("GET", s.Public+r.path, nil)
		req.Header.Set("User-Agent", "accesslog-test")
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read to the end: the connection is reused, so alice's second request meets the
		// same Envoy worker, whose edge cache holds her first allow.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var lines map[string]logLine // by URL and status; the edge cache's hit apart
	var hit *logLine
	testutil.Eventually(t, 10*time.Second, "six access-log lines", func() bool {
		lines, hit = map[string]logLine{}, nil
		for _, l := range strings.Split(s.Envoy.Log(), "\n") {
			var ll logLine
			if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &ll) == nil && ll.HTTPRequest.UserAgent == "accesslog-test" {
				if ll.Authz.EdgeCache != nil && *ll.Authz.EdgeCache {
					hit = &ll
					continue
				}
				lines[ll.HTTPRequest.RequestURL+" "+http.StatusText(ll.HTTPRequest.Status)] = ll
			}
		}
		return len(lines) == 5 && hit != nil
	})
	// The second request of alice's token was answered by the edge decision cache: an
	// allow authz gave before, replayed; the log says so instead of a decision.
	if hit.HTTPRequest.Status != 200 || hit.Authz.Decision != "" || hit.Authz.Subject != "alice" {
		t.Errorf("edge cache hit: %+v", hit)
	}
	// A tokenless request on an anonymous route is served without authz: the line says so.
	want := map[string]struct {
		route, decision, reason, subject string
		tokenless                        bool
	}{
		"/shop/orders OK":           {"shop.listOrders", "allow", "ok", "alice", false},
		"/shop/orders Forbidden":    {"shop.listOrders", "deny", "insufficient_scope", "", false},
		"/shop/orders Unauthorized": {"shop.listOrders", "deny", "missing_token", "", false},
		"/shop/open OK":             {"shop.open", "", "", "", true},
		"/nope Not Found":           {"specgate.404", "", "", "", false},
	}
	for key, w := range want {
		l, ok := lines[key]
		if !ok {
			t.Errorf("no line for %s; lines: %v", key, lines)
			continue
		}
		if l.Route != w.route || l.Authz.Decision != w.decision || l.Authz.Reason != w.reason || l.Authz.Subject != w.subject ||
			(l.Authz.Tokenless != nil && *l.Authz.Tokenless) != w.tokenless {
			t.Errorf("%s: route %q, authz %+v; want %+v", key, l.Route, l.Authz, w)
		}
		if l.HTTPRequest.RequestMethod != "GET" || l.HTTPRequest.RemoteIP != "127.0.0.1" || !strings.HasSuffix(l.HTTPRequest.Latency, "s") || l.DurationMs == nil {
			t.Errorf("%s: httpRequest %+v, durationMs %v", key, l.HTTPRequest, l.DurationMs)
		}
	}
	out := s.Envoy.Log()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "{") && strings.Contains(l, `"status":403`) {
			t.Logf("a line: %s", l)
		}
	}
	for _, secret := range []string{alice, bob, "4111111111111111"} {
		if strings.Contains(out, secret) {
			t.Errorf("Envoy's output shows %.12s…", secret)
		}
	}
}
