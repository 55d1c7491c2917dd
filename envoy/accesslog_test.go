package envoy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/e2e"
	"github.com/specgate/specgate/internal/stack"
	"github.com/specgate/specgate/internal/testutil"
)

// logLine is what the access log test reads of a line.
type logLine struct {
	HTTPRequest struct {
		RequestMethod, RequestURL, Latency, RemoteIP, UserAgent string
		Status                                                  int
	} `json:"httpRequest"`
	Route, ResponseFlags string
	DurationMs           *int
	Authz                struct{ Decision, Reason, Subject string }
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
			c.Authz.Timeout.Duration = time.Second
		}})
	alice, bob := s.Token("alice", "orders:read"), s.Token("bob")
	for _, r := range []struct{ path, token string }{
		{"/shop/orders?card=4111111111111111", alice}, {"/shop/orders", bob}, {"/shop/orders", ""},
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
		resp.Body.Close()
	}
	var lines map[string]logLine // by method, URL and status
	testutil.Eventually(t, 10*time.Second, "five access-log lines", func() bool {
		lines = map[string]logLine{}
		for _, l := range strings.Split(s.Envoy.Log(), "\n") {
			var ll logLine
			if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &ll) == nil && ll.HTTPRequest.UserAgent == "accesslog-test" {
				lines[ll.HTTPRequest.RequestURL+" "+http.StatusText(ll.HTTPRequest.Status)] = ll
			}
		}
		return len(lines) == 5
	})
	want := map[string]struct{ route, decision, reason, subject string }{
		"/shop/orders OK":           {"shop.listOrders", "allow", "ok", "alice"},
		"/shop/orders Forbidden":    {"shop.listOrders", "deny", "insufficient_scope", ""},
		"/shop/orders Unauthorized": {"shop.listOrders", "deny", "missing_token", ""},
		"/shop/open OK":             {"shop.open", "allow", "anonymous", ""},
		"/nope Not Found":           {"specgate.404", "", "", ""},
	}
	for key, w := range want {
		l, ok := lines[key]
		if !ok {
			t.Errorf("no line for %s; lines: %v", key, lines)
			continue
		}
		if l.Route != w.route || l.Authz.Decision != w.decision || l.Authz.Reason != w.reason || l.Authz.Subject != w.subject {
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
