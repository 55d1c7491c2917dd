package chaos

import (
	"encoding/json"
	"fmt"
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

// service is a one-route anonymous spec: GET /<name>/x on backend port, with an optional
// x-specgate timeout.
func service(name, port, timeout string) string {
	t := ""
	if timeout != "" {
		t = ", timeout: " + timeout
	}
	return fmt.Sprintf(`openapi: 3.1.0
info: {title: %[1]s, version: 1.0.0}
x-specgate: {service: %[1]s, backend: "http://127.0.0.1:%[2]s", basePath: /%[1]s%[3]s}
security: []
paths:
  /x:
    get: {operationId: x, responses: {"200": {description: ok}}}
`, name, port, t)
}

// Scenario 6. A slow backend (sleeps 1s past its route's 200ms timeout) answers 504 and a
// dead one (nobody listens on its port) 503, both with JSON bodies from Envoy's local reply
// mapper, while a healthy service beside them keeps answering 200.
func TestSlowAndDeadBackends(t *testing.T) {
	ok := e2e.NewBackend(t, "ok")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done(): // Envoy resets the upstream request at its timeout
		}
		fmt.Fprintln(w, `{"late":true}`)
	}))
	t.Cleanup(slow.Close)
	slowPort := strconv.Itoa(slow.Listener.Addr().(*net.TCPAddr).Port)
	deadPort := strconv.Itoa(testutil.FreePort(t)) // free: nobody listens there
	s := stack.Start(t, stack.Options{Specs: map[string]string{
		"ok.yaml":   service("ok", ok.Port(), ""),
		"slow.yaml": service("slow", slowPort, "200ms"),
		"dead.yaml": service("dead", deadPort, ""),
	}, Configure: tolerant})
	l := startLoad(t, loadRPS,
		target{name: "ok", url: s.Public + "/ok/x"},
		target{name: "slow", url: s.Public + "/slow/x"},
		target{name: "dead", url: s.Public + "/dead/x"})
	l.setPhase("steady")
	l.hold(2 * phaseTime)
	l.halt()
	l.report()

	l.only("steady", "ok", 200)
	l.only("steady", "slow", 504)
	l.only("steady", "dead", 503)
	for _, c := range []struct {
		target string
		status int
	}{{"slow", 504}, {"dead", 503}} {
		if n := l.nonJSONCount("steady", c.target, c.status); n > 0 {
			t.Errorf("%s: %d of the %d answers without a JSON body (application/json); first: %q", c.target, n, c.status, l.sampleOf("steady", c.target, c.status))
		}
		var body map[string]any
		sample := l.sampleOf("steady", c.target, c.status)
		if err := json.Unmarshal([]byte(sample), &body); err == nil {
			t.Logf("%s body: %s", c.target, sample)
		}
	}
}
