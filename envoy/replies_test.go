package envoy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// Every answer Envoy makes itself has the gateway's JSON body with a stable error code, never
// an empty body or Envoy's internal details: a rate limit, a refused WebSocket upgrade, a
// backend that does not answer in time, one that is down.
func TestEnvoysOwnAnswersAreJSON(t *testing.T) {
	ok := e2e.NewBackend(t, "ok")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	spec := func(name, port, extra string) string {
		return fmt.Sprintf(`openapi: 3.1.0
info: {title: %[1]s, version: 1.0.0}
x-specgate: {service: %[1]s, backend: "http://127.0.0.1:%[2]s", basePath: /%[1]s%[3]s}
security: []
paths:
  /x:
    get: {operationId: x, x-specgate: {rateLimits: [{requests: 1, per: minute, key: route}]}, responses: {"200": {description: ok}}}
`, name, port, extra)
	}
	s := stack.Start(t, stack.Options{Specs: map[string]string{
		"ok.yaml":   spec("ok", ok.Port(), ""),
		"slow.yaml": spec("slow", strconv.Itoa(slow.Listener.Addr().(*net.TCPAddr).Port), ", timeout: 200ms"),
		"dead.yaml": spec("dead", strconv.Itoa(testutil.FreePort(t)), ""),
	}})
	send := func(path string, header ...string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest("GET", s.Public+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // an upgrade is sent as is
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &v) != nil {
			t.Errorf("GET %s: %d answered %q with %q, want the gateway's JSON", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		return resp.StatusCode, resp.Header, v
	}
	if code, _, _ := send("/ok/x"); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	for _, tc := range []struct {
		name, path string
		header     []string
		status     int
		error      string
	}{
		{"rate limited", "/ok/x", nil, 429, "rate_limited"},
		{"WebSocket upgrade", "/ok/x", []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, 403, "upgrade_not_supported"},
		{"backend too slow", "/slow/x", nil, 504, "backend_timeout"},
		{"backend down", "/dead/x", nil, 503, "backend_unavailable"},
	} {
		code, h, v := send(tc.path, tc.header...)
		if code != tc.status || v["error"] != tc.error || v["status"] != float64(tc.status) {
			t.Errorf("%s: %d %v, want %d with error %q", tc.name, code, v, tc.status, tc.error)
		}
		if tc.status == 429 && h.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After: %v", h)
		}
	}
}
