package envoy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

const shopSpec = `openapi: 3.1.0
info: {title: Shop, version: 1.0.0}
x-specgate: {service: shop, backend: "http://127.0.0.1:{{PORT}}", basePath: /shop}
security: [{oauth: [orders:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://auth.example.com/token", scopes: {orders:read: r, orders:write: w, admin: a}}}}
paths:
  /public:
    get: {operationId: public, security: [], responses: {"200": {description: ok}}}
  /orders:
    get:
      operationId: listOrders
      x-specgate: {rateLimits: [{requests: 10, per: minute, key: client}], allowedHeaders: [X-Tenant]}
      responses: {"200": {description: ok}}
    post:
      operationId: createOrder
      security: [{oauth: [orders:write]}, {oauth: [admin]}]
      responses: {"200": {description: ok}}
  /by-ip:
    get: {operationId: byIP, security: [], x-specgate: {rateLimits: [{requests: 3, per: minute, key: ip}]}, responses: {"200": {description: ok}}}
  /by-route:
    get: {operationId: byRoute, security: [], x-specgate: {rateLimits: [{requests: 2, per: minute, key: route}]}, responses: {"200": {description: ok}}}
  /by-tenant:
    get: {operationId: byTenant, x-specgate: {rateLimits: [{requests: 2, per: minute, key: "header+client:X-Tenant"}], allowedHeaders: [X-Tenant]}, responses: {"200": {description: ok}}}
  /catalog/{id}:
    get:
      operationId: catalogItem
      security: []
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      x-specgate: {rateLimits: [{requests: 4, per: minute, key: client}, {requests: 50, per: minute, key: ip}], allowedHeaders: [X-Cart, If-None-Match]}
      responses: {"200": {description: ok}}
  /search:
    get: {operationId: search, security: [], x-specgate: {rateLimits: [{requests: 2, per: minute, key: "header:X-Session"}]}, responses: {"200": {description: ok}}}
  /subscribe:
    post: {operationId: subscribe, security: [], responses: {"200": {description: ok}}}
  /feed:
    get: {operationId: feed, security: [], parameters: [{name: access_token, in: query, schema: {type: string}}], responses: {"200": {description: ok}}}
`

// gateway is the whole gateway of test/harness/stack (real Envoy; the control plane, two authz and
// two ratelimit replicas as processes; real Redis; a JWKS) in front of one echo backend.
type gateway struct {
	*stack.Stack
	t       *testing.T
	backend *e2e.Backend
}

// newGateway serves shopSpec; configure (if not nil) changes its gateway.yaml.
func newGateway(t *testing.T, configure func(*config.Gateway)) *gateway {
	return newGatewayWith(t, stack.Options{Configure: configure})
}

// newGatewayWith serves shopSpec on a stack of two authz and two ratelimit replicas, with o's
// other options.
func newGatewayWith(t *testing.T, o stack.Options) *gateway {
	b := e2e.NewBackend(t, "shop")
	o.Specs, o.Vars = map[string]string{"shop.yaml": shopSpec}, map[string]string{"PORT": b.Port()}
	o.AuthzReplicas, o.RateLimitReplicas = 2, 2
	return &gateway{Stack: stack.Start(t, o), t: t, backend: b}
}

// revoke calls POST /v1/revocations on authz replica i.
func (s *gateway) revoke(i int, body map[string]string) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+s.Authz[i].HTTP+"/v1/revocations", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+stack.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("revoke %v on replica %d: %v", body, i, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("revoke %v on replica %d: %d", body, i, resp.StatusCode)
	}
}

func (s *gateway) get(path, token string, hdr map[string]string) *http.Response {
	return s.do("GET", path, token, hdr)
}

func (s *gateway) do(method, path, token string, hdr map[string]string) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.Public+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The whole suite runs three times: tokenless requests on anonymous routes served by Envoy
// alone (the default), authz asked for every request, and with the edge decision cache. Neither
// may change a single answer or header (revocation within 1s included).
func TestGatewayEndToEnd(t *testing.T) {
	t.Run("tokenless requests without authz", func(t *testing.T) { testGateway(t, newGateway(t, nil)) })
	t.Run("authz every request", func(t *testing.T) {
		testGateway(t, newGateway(t, func(g *config.Gateway) { g.Authz.CheckTokenless = true }))
	})
	t.Run("authz plugin", func(t *testing.T) {
		// Four workers, four plugin VMs, each with its own feed: a revocation must reach them all.
		s := newGatewayWith(t, stack.Options{Plugin: testutil.Plugin(t), EnvoyWorkers: 4})
		testGateway(t, s)
		testPlugin(t, s)
	})
	t.Run("edge decision cache", func(t *testing.T) {
		s := newGateway(t, func(g *config.Gateway) { g.Authz.DecisionCacheTTL.Duration = 500 * time.Millisecond })
		testGateway(t, s)
		testDecisionCache(t, s)
	})
}

func testGateway(t *testing.T, s *gateway) {
	alice := s.Token("alice", "orders:read")

	t.Run("statuses per route as the spec says", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path, token string
			want                      int
		}{
			{"anonymous without token", "GET", "/shop/public", "", 200},
			{"anonymous with valid token", "GET", "/shop/public", alice, 200},
			{"anonymous with bad token", "GET", "/shop/public", "not.a.jwt", 401},
			{"protected without token", "GET", "/shop/orders", "", 401},
			{"protected with scope", "GET", "/shop/orders", alice, 200},
			{"protected, other scope", "GET", "/shop/orders", s.Token("zed", "other"), 403},
			{"OR-of-AND: neither", "POST", "/shop/orders", alice, 403},
			{"OR-of-AND: first", "POST", "/shop/orders", s.Token("w", "orders:write"), 200},
			{"OR-of-AND: second", "POST", "/shop/orders", s.Token("adm", "admin"), 200},
		} {
			resp := s.do(tc.method, tc.path, tc.token, nil)
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, resp.StatusCode, tc.want)
			}
			switch tc.want {
			case 401:
				if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
					t.Errorf("%s: WWW-Authenticate %q", tc.name, h)
				}
			case 403:
				if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
					t.Errorf("%s: WWW-Authenticate %q", tc.name, h)
				}
			}
		}
	})

	t.Run("identity headers cannot be forged", func(t *testing.T) {
		s.get("/shop/orders", alice, map[string]string{"X-User-Id": "mallory", "X-Client-Id": "evil"})
		got := s.backend.Last().Header
		if v := got.Values("X-User-Id"); len(v) != 1 || v[0] != "alice" {
			t.Errorf("X-User-Id at the backend: %q, want [alice]", v)
		}
		if v := got.Values("X-Client-Id"); len(v) != 0 {
			t.Errorf("client-sent X-Client-Id reached the backend: %q", v)
		}
		s.get("/shop/public", "", map[string]string{"X-User-Id": "mallory"})
		if v := s.backend.Last().Header.Values("X-User-Id"); len(v) != 0 {
			t.Errorf("anonymous route forwarded a forged X-User-Id: %q", v)
		}
	})

	t.Run("revocation on one replica refuses on both within 1s", func(t *testing.T) {
		tok := s.Token("dave", "orders:read")
		if code := s.get("/shop/orders", tok, nil).StatusCode; code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		s.revoke(0, map[string]string{"token": tok})
		// Envoy balances its checks over both replicas in turn: ten 401s in a row come from both.
		start, refused := time.Now(), 0
		for refused < 10 {
			if s.get("/shop/orders", tok, nil).StatusCode == 401 {
				refused++
			} else {
				refused = 0
			}
			if time.Since(start) > time.Second {
				t.Fatal("revoked token still accepted through Envoy by a replica after 1s")
			}
		}
		t.Logf("revocation refused by both replicas after %s", time.Since(start))
		if code := s.get("/shop/orders", s.Token("dave2", "orders:read"), nil).StatusCode; code != 200 {
			t.Errorf("another token refused after a revocation: %d", code)
		}
	})

	t.Run("rate limits shared by two replicas on Redis", func(t *testing.T) {
		// The windows are fixed calendar minutes: start away from a boundary.
		if left := time.Minute - time.Duration(time.Now().Unix()%60)*time.Second; left < 5*time.Second {
			time.Sleep(left + 100*time.Millisecond)
		}
		carol, bob := s.Token("carol", "orders:read"), s.Token("bob", "orders:read")
		for i := 1; i <= 10; i++ {
			resp := s.get("/shop/orders", carol, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("carol's request %d: %d", i, resp.StatusCode)
			}
			if i == 1 && resp.Header.Get("X-RateLimit-Limit") == "" {
				t.Errorf("allowed response lacks X-RateLimit-Limit: %v", resp.Header)
			}
		}
		resp := s.get("/shop/orders", carol, nil)
		if resp.StatusCode != 429 {
			t.Fatalf("carol's 11th request: %d, want 429", resp.StatusCode)
		}
		for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("429 lacks %s: %v", h, resp.Header)
			}
		}
		if code := s.get("/shop/orders", bob, nil).StatusCode; code != 200 {
			t.Errorf("bob limited by carol's quota: %d", code)
		}
		for i, want := range []int{200, 200, 200, 429} {
			if code := s.get("/shop/by-ip", "", nil).StatusCode; code != want {
				t.Errorf("by-ip request %d: %d, want %d", i+1, code, want)
			}
		}
		for i, want := range []int{200, 200, 429} {
			if code := s.get("/shop/by-route", s.Token("u"+strconv.Itoa(i)), nil).StatusCode; code != want {
				t.Errorf("by-route request %d: %d, want %d", i+1, code, want)
			}
		}
		// header+client: one bucket per client and tenant, so another client naming tenant t1
		// does not drain it.
		mallory, grace := s.Token("mallory", "orders:read"), s.Token("grace", "orders:read")
		t1 := map[string]string{"X-Tenant": "t1"}
		for i, want := range []int{200, 200, 429} {
			if code := s.get("/shop/by-tenant", mallory, t1).StatusCode; code != want {
				t.Errorf("by-tenant, mallory as t1, request %d: %d, want %d", i+1, code, want)
			}
		}
		if code := s.get("/shop/by-tenant", grace, t1).StatusCode; code != 200 {
			t.Errorf("by-tenant: grace as t1 after mallory used up her t1 bucket: %d, want 200", code)
		}
	})
}

// testDecisionCache: repeats of an allowed request skip authz and get exactly what authz gave
// the first one; what authz did not allow is never served from the cache.
func testDecisionCache(t *testing.T, s *gateway) {
	erin := s.Token("erin", "orders:read")
	forged := map[string]string{"X-User-Id": "mallory", "X-Client-Id": "evil", "X-Evil": "1", "Accept-Language": "fr", "X-Tenant": "t1"}
	skipped := s.stat("http.public.ext_authz.disabled")
	var first http.Header
	for i := range 5 {
		if code := s.get("/shop/orders", erin, forged).StatusCode; code != 200 {
			t.Fatalf("request %d: %d", i+1, code)
		}
		got := s.backend.Last().Header
		if v := got.Values("X-User-Id"); len(v) != 1 || v[0] != "erin" {
			t.Errorf("request %d: X-User-Id at the backend %q, want [erin]", i+1, v)
		}
		for _, h := range []string{"X-Client-Id", "X-Evil", "Authorization"} {
			if v := got.Values(h); len(v) != 0 {
				t.Errorf("request %d: %s reached the backend: %q", i+1, h, v)
			}
		}
		if got.Get("X-Tenant") != "t1" {
			t.Errorf("request %d: the route's allowed X-Tenant did not reach the backend", i+1)
		}
		got.Del("X-Request-Id") // Envoy's, new per request
		if i == 0 {
			first = got.Clone()
		} else if !reflect.DeepEqual(got, first) {
			t.Errorf("request %d: the backend got\n%v\nafter authz gave the first\n%v", i+1, got, first)
		}
	}
	if n := s.stat("http.public.ext_authz.disabled") - skipped; n < 3 {
		t.Errorf("no repeat request was answered from the decision cache (ext_authz.disabled +%d)", n)
	}
	// Allowed on GET /shop/orders, not on POST: another route (and policy) is another key.
	if code := s.do("POST", "/shop/orders", erin, nil).StatusCode; code != 403 {
		t.Errorf("POST with a token cached for GET: %d, want 403", code)
	}
	// A token over 8 KiB is never cached (a worker's tables are bounded in bytes too): every
	// repeat goes to authz, and is still allowed.
	big, err := devissuer.Mint(s.Key, stack.Issuer, stack.Audience, "frank", []string{"orders:read"}, time.Hour, map[string]any{"pad": strings.Repeat("p", 9000)})
	if err != nil {
		t.Fatal(err)
	}
	before := s.stat("http.public.ext_authz.disabled")
	for i := range 3 {
		if code := s.get("/shop/orders", big, map[string]string{"X-Tenant": "t1"}).StatusCode; code != 200 {
			t.Errorf("a 9 KB token, request %d: %d", i+1, code)
		}
	}
	if n := s.stat("http.public.ext_authz.disabled") - before; n != 0 {
		t.Errorf("a 9 KB token was answered from the decision cache %d times", n)
	}
	if n := s.stat("http.public.lua.specgate_authz_cache.errors"); n != 0 {
		t.Errorf("decision cache script errors: %d\n%s", n, s.Envoy.Log())
	}
}

// stat is an Envoy counter (0 when absent).
func (s *gateway) stat(name string) int {
	s.t.Helper()
	v, err := s.Envoy.Stat(name)
	if err != nil {
		s.t.Fatal(err)
	}
	n, _ := strconv.Atoi(v)
	return n
}
