package envoy_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
)

const ipAllowSpec = `openapi: 3.1.0
info: {title: Office, version: 1.0.0}
x-specgate: {service: office, backend: "http://127.0.0.1:{{PORT}}", basePath: /office, ipAllow: [127.0.0.2, 10.20.0.0/16]}
security: []
paths:
  /reports:
    get: {operationId: reports, responses: {"200": {description: ok}}}
  /status:
    get: {operationId: status, x-specgate: {ipAllow: []}, responses: {"200": {description: ok}}}
`

// x-specgate ipAllow admits only the listed client addresses, through real Envoy: by the
// peer's address with no trusted hop (a client's X-Forwarded-For forges nothing), by the
// address the load balancer appended with xffTrustedHops 1; with or without a token; and an
// operation's ipAllow: [] opens it. A refusal is the gateway's JSON and never reaches the
// backend.
func TestIPAllowList(t *testing.T) {
	for _, hops := range []uint32{0, 1} {
		t.Run(map[uint32]string{0: "peer address", 1: "one trusted hop"}[hops], func(t *testing.T) {
			t.Parallel()
			b := e2e.NewBackend(t, "office")
			s := stack.Start(t, stack.Options{Specs: map[string]string{"office.yaml": ipAllowSpec}, Vars: map[string]string{"PORT": b.Port()},
				Configure: func(c *config.Gateway) { c.XFFTrustedHops = hops }})
			from := func(local string) *http.Client {
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
				return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			}
			token := s.Token("alice", "")
			for _, tc := range []struct {
				name, local, path, xff, token string
				want                          int
			}{
				{"listed address", "127.0.0.2", "/office/reports", "", "", 200},
				{"other address", "127.0.0.1", "/office/reports", "", "", 403},
				{"other address with a token", "127.0.0.1", "/office/reports", "", token, 403},
				{"listed address with a token", "127.0.0.2", "/office/reports", "", token, 200},
				{"operation that clears the list", "127.0.0.1", "/office/status", "", "", 200},
				// With no trusted hop the header is the client's own claim; with one, the
				// last address in it is the load balancer's view of the client.
				{"listed address in X-Forwarded-For", "127.0.0.1", "/office/reports", "10.20.3.4", "", map[uint32]int{0: 403, 1: 200}[hops]},
				{"other address in X-Forwarded-For", "127.0.0.2", "/office/reports", "192.0.2.1", "", map[uint32]int{0: 200, 1: 403}[hops]},
			} {
				req, _ := http.NewRequest("GET", s.Public+tc.path, nil)
				if tc.xff != "" {
					req.Header.Set("X-Forwarded-For", tc.xff)
				}
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				hits := b.Hits()
				resp, err := from(tc.local).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
					continue
				}
				if reached := b.Hits() > hits; reached != (tc.want == 200) {
					t.Errorf("%s: reached the backend: %v", tc.name, reached)
				}
				if tc.want == 403 {
					var v struct {
						Error  string
						Status int
					}
					if json.Unmarshal(body, &v) != nil || v.Error != "ip_not_allowed" || v.Status != 403 || resp.Header.Get("Content-Type") != "application/json" {
						t.Errorf("%s: refusal %q (%s), want the gateway's JSON ip_not_allowed", tc.name, body, resp.Header.Get("Content-Type"))
					}
				}
			}
		})
	}
}
