// Package chaos holds the resilience suite: each scenario runs the whole gateway (real Envoy,
// specgate processes, real Redis) under steady load on 127.0.0.1, injects one fault, and
// asserts what users see. `make chaos` runs it in full; `make test` runs the short form.
package chaos

import (
	"net/http"
	"testing"
	"time"

	"github.com/specgate/specgate/internal/e2e"
	"github.com/specgate/specgate/internal/stack"
)

const shop = `openapi: 3.1.0
info: {title: Shop, version: 1.0.0}
x-specgate: {service: shop, backend: "http://127.0.0.1:{{PORT}}", basePath: /shop}
security: [{oauth: [orders:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {orders:read: r}}}}
paths:
  /orders:
    get: {operationId: listOrders, responses: {"200": {description: ok}}}
  /public:
    get: {operationId: public, security: [], x-specgate: {rateLimits: [{requests: 5, per: minute, key: ip}]}, responses: {"200": {description: ok}}}
`

func get(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// kill -9 the authz service: protected routes answer 503, never 200; restarted, 200 again.
func TestKillAuthz(t *testing.T) {
	b := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": shop}, Vars: map[string]string{"PORT": b.Port()}})
	tok := s.Token("alice", "orders:read")
	if code := get(t, s.Public+"/shop/orders", tok); code != 200 {
		t.Fatalf("before: %d", code)
	}
	s.Authz[0].Kill()
	for i := range 50 {
		if code := get(t, s.Public+"/shop/orders", tok); code == 200 || code == 0 {
			t.Fatalf("request %d with authz down: %d", i, code)
		}
	}
	s.Authz[0].Start()
	s.Authz[0].WaitReady("/readyz")
	deadline := time.Now().Add(10 * time.Second)
	for get(t, s.Public+"/shop/orders", tok) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("authz restarted but requests still refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
