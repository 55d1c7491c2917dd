package envoy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/internal/e2e"
	"github.com/specgate/specgate/internal/testenvoy"
	"github.com/specgate/specgate/internal/testredis"
	"github.com/specgate/specgate/internal/testutil"
	"github.com/specgate/specgate/ratelimit"
	"github.com/specgate/specgate/xds"
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
`

// stack is the whole gateway on loopback: real Envoy, control plane, two authz replicas, two
// ratelimit replicas, real Redis, a JWKS and a backend.
type stack struct {
	t              *testing.T
	cfg            config.Gateway
	key            *devissuer.Key
	issuer         string
	backend        *e2e.Backend
	authzA, authzB string // admin HTTP addresses
	envoyAuthzGRPC string
	public         string
	envoy          *testenvoy.Envoy
}

const admin = "e2e-admin-token"

// startAuthz runs an authz replica until the test ends.
func startAuthz(t *testing.T, cfg config.Gateway, grpcAddr, httpAddr string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = extauthz.Run(ctx, extauthz.Options{Config: cfg, GRPCListener: gl, HTTPListener: hl, AdminToken: admin, Logger: quiet()})
	}()
	t.Cleanup(func() { cancel(); <-done })
	testutil.WaitOK(t, "http://"+hl.Addr().String()+"/readyz", 15*time.Second)
	return gl.Addr().String(), hl.Addr().String()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newStack starts the gateway; configure (if not nil) changes its gateway.yaml.
func newStack(t *testing.T, configure func(*config.Gateway)) *stack {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, backend: e2e.NewBackend(t, "shop")}
	redis := testredis.Start(t)

	var err error
	if s.key, err = devissuer.Generate("RS256"); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(devissuer.JWKS(s.key))
	t.Cleanup(jwks.Close)
	s.issuer = "https://issuer.test/"

	s.cfg = config.Default()
	s.cfg.Backends.Allow = []string{"127.0.0.0/8"} // the test backends
	s.cfg.Listeners.Public, s.cfg.Listeners.Internal = uint32(testutil.FreePort(t)), uint32(testutil.FreePort(t))
	s.cfg.Issuers = []config.Issuer{{Issuer: s.issuer, JWKSURI: jwks.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}}}
	s.cfg.Revocation.Store = redis.URL()
	s.cfg.RateLimit.Store = redis.URL()
	if configure != nil {
		configure(&s.cfg)
	}
	s.public = "http://127.0.0.1:" + strconv.Itoa(int(s.cfg.Listeners.Public))

	// Two authz replicas on one Redis: Envoy asks B, revocations go to A.
	_, s.authzA = startAuthz(t, s.cfg, "127.0.0.1:0", "127.0.0.1:0")
	s.envoyAuthzGRPC, s.authzB = startAuthz(t, s.cfg, "127.0.0.1:0", "127.0.0.1:0")

	specs := t.TempDir()
	e2e.WriteSpec(t, specs, "shop.yaml", shopSpec, map[string]string{"PORT": s.backend.Port()})
	cp, err := xds.New(xds.Options{SpecDir: specs, Gateway: s.cfg, ListenAddress: "127.0.0.1", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	cpDone := make(chan struct{})
	go func() { defer close(cpDone); _ = cp.Serve(ctx, gl, hl) }()
	t.Cleanup(func() { cancel(); <-cpDone })

	// Two ratelimit replicas on the same Redis, both behind Envoy's ratelimit cluster.
	var rls []string
	for range 2 {
		rl, err := ratelimit.Start(ctx, ratelimit.Options{Config: s.cfg, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", XDSAddr: gl.Addr().String(), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = rl.Wait() })
		testutil.WaitOK(t, "http://"+rl.HTTPAddr()+"/readyz", 15*time.Second)
		rls = append(rls, rl.GRPCAddr())
	}

	adminAddr := testutil.FreeAddr(t)
	boot, err := translate.ADSBootstrap(translate.BootstrapOptions{NodeID: "e2e", AdminAddress: adminAddr,
		AuthzAddress: s.envoyAuthzGRPC, RateLimitAddr: strings.Join(rls, ",")}, gl.Addr().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	y, err := translate.YAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(p, y, 0o644); err != nil {
		t.Fatal(err)
	}
	s.envoy = testenvoy.Start(t, p, adminAddr)
	deadline := time.Now().Add(10 * time.Second)
	for s.get("/shop/public", "", nil).StatusCode != 200 {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *stack) token(sub string, scopes ...string) string {
	s.t.Helper()
	tok, err := devissuer.Mint(s.key, s.issuer, "api", sub, scopes, time.Hour, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

func (s *stack) get(path, token string, hdr map[string]string) *http.Response {
	return s.do("GET", path, token, hdr)
}

func (s *stack) do(method, path, token string, hdr map[string]string) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.public+path, nil)
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
	t.Run("tokenless requests without authz", func(t *testing.T) { testGateway(t, newStack(t, nil)) })
	t.Run("authz every request", func(t *testing.T) {
		testGateway(t, newStack(t, func(g *config.Gateway) { g.Authz.CheckTokenless = true }))
	})
	t.Run("edge decision cache", func(t *testing.T) {
		s := newStack(t, func(g *config.Gateway) { g.Authz.DecisionCacheTTL.Duration = 500 * time.Millisecond })
		testGateway(t, s)
		testDecisionCache(t, s)
	})
}

func testGateway(t *testing.T, s *stack) {
	alice := s.token("alice", "orders:read")

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
			{"protected, other scope", "GET", "/shop/orders", s.token("zed", "other"), 403},
			{"OR-of-AND: neither", "POST", "/shop/orders", alice, 403},
			{"OR-of-AND: first", "POST", "/shop/orders", s.token("w", "orders:write"), 200},
			{"OR-of-AND: second", "POST", "/shop/orders", s.token("adm", "admin"), 200},
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

	t.Run("revocation on replica A refuses on replica B within 1s", func(t *testing.T) {
		tok := s.token("dave", "orders:read")
		if code := s.get("/shop/orders", tok, nil).StatusCode; code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		body, _ := json.Marshal(map[string]string{"token": tok})
		req, _ := http.NewRequest("POST", "http://"+s.authzA+"/v1/revocations", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("revoke on A: %v %v", err, resp)
		}
		resp.Body.Close()
		start := time.Now()
		for s.get("/shop/orders", tok, nil).StatusCode != 401 {
			if time.Since(start) > time.Second {
				t.Fatal("revoked token still accepted through Envoy (authz B) after 1s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("revocation visible through replica B after %s", time.Since(start))
		if code := s.get("/shop/orders", s.token("dave2", "orders:read"), nil).StatusCode; code != 200 {
			t.Errorf("another token refused after a revocation: %d", code)
		}
	})

	t.Run("rate limits shared by two replicas on Redis", func(t *testing.T) {
		// The windows are fixed calendar minutes: start away from a boundary.
		if left := time.Minute - time.Duration(time.Now().Unix()%60)*time.Second; left < 5*time.Second {
			time.Sleep(left + 100*time.Millisecond)
		}
		carol, bob := s.token("carol", "orders:read"), s.token("bob", "orders:read")
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
			if code := s.get("/shop/by-route", s.token("u"+strconv.Itoa(i)), nil).StatusCode; code != want {
				t.Errorf("by-route request %d: %d, want %d", i+1, code, want)
			}
		}
		// header+client: one bucket per client and tenant, so another client naming tenant t1
		// does not drain it.
		mallory, grace := s.token("mallory", "orders:read"), s.token("grace", "orders:read")
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
func testDecisionCache(t *testing.T, s *stack) {
	erin := s.token("erin", "orders:read")
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
	big, err := devissuer.Mint(s.key, s.issuer, "api", "frank", []string{"orders:read"}, time.Hour, map[string]any{"pad": strings.Repeat("p", 9000)})
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
		t.Errorf("decision cache script errors: %d\n%s", n, s.envoy.Log())
	}
}

// stat is an Envoy counter (0 when absent).
func (s *stack) stat(name string) int {
	s.t.Helper()
	v, err := s.envoy.Stat(name)
	if err != nil {
		s.t.Fatal(err)
	}
	n, _ := strconv.Atoi(v)
	return n
}
