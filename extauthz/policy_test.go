package extauthz

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
)

func TestScopesOrOfAnd(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Issuers = append(cfg.Issuers, cfg.Issuers[0])
	cfg.Issuers[1].Issuer = "https://other.test/"
	_, c := startServer(t, deps{cfg: cfg})
	route := policy.Route{ID: "orders.deleteOrder", AnyOf: []policy.Requirement{
		{Scopes: []string{"orders:write", "orders:read"}},
		{Scopes: []string{"admin"}},
	}}
	pinned := policy.Route{ID: "orders.pinned", AnyOf: []policy.Requirement{{Scopes: []string{"a"}, Issuers: []string{"https://other.test/"}}}}
	anyToken := policy.Route{ID: "orders.any", AnyOf: []policy.Requirement{{}}}
	cases := []struct {
		name   string
		route  policy.Route
		scopes []string
		iss    string
		want   int
	}{
		{"both scopes of the first requirement", route, []string{"orders:read", "orders:write"}, testIss, 200},
		{"one scope of the first requirement only", route, []string{"orders:write"}, testIss, 403},
		{"second requirement", route, []string{"admin"}, testIss, 200},
		{"no scopes", route, nil, testIss, 403},
		{"scope names are exact", route, []string{"orders:read:all", "admin2"}, testIss, 403},
		{"issuer pinned: other issuer", pinned, []string{"a"}, testIss, 403},
		{"issuer pinned: right issuer", pinned, []string{"a"}, "https://other.test/", 200},
		{"any valid token", anyToken, nil, testIss, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, p.key, "alice", tc.scopes, map[string]any{"iss": tc.iss})
			r := check(t, c, bearerReq(t, tc.route, tok))
			if got := httpStatus(r); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if tc.want == 403 && tc.route.ID == route.ID {
				if h := deniedHeader(r, "www-authenticate"); h != `Bearer error="insufficient_scope", scope="orders:write orders:read"` {
					t.Errorf("WWW-Authenticate %q", h)
				}
				body := r.GetDeniedResponse().GetBody()
				if !strings.Contains(body, `"required_scopes":[["orders:write","orders:read"],["admin"]]`) {
					t.Errorf("body %s", body)
				}
			}
		})
	}
}

func TestAnonymousRoutes(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p)})
	anon := policy.Route{ID: "catalog.list", Anonymous: true}
	if got := httpStatus(check(t, c, request(t, anon, nil))); got != 200 {
		t.Fatalf("anonymous without token: %d", got)
	}
	if got := httpStatus(check(t, c, bearerReq(t, anon, mint(t, p.key, "alice", nil, nil)))); got != 200 {
		t.Fatalf("anonymous with a valid token: %d", got)
	}
	expired := mint(t, p.key, "alice", nil, map[string]any{"exp": 1})
	if got := httpStatus(check(t, c, bearerReq(t, anon, expired))); got != 401 {
		t.Fatalf("anonymous with an invalid token: %d", got)
	}
	if got := httpStatus(check(t, c, request(t, anon, map[string]string{"authorization": "Basic eDp5"}))); got != 401 {
		t.Fatalf("anonymous with a non-bearer Authorization: %d", got)
	}
	// A protected route without a token.
	r := check(t, c, request(t, protectedRoute, nil))
	if got := httpStatus(r); got != 401 || deniedHeader(r, "www-authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("protected without token: %d %q", got, deniedHeader(r, "www-authenticate"))
	}
}

func TestPolicyErrorsFailClosed(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	s, c := startServer(t, deps{cfg: testConfig(p)})
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	for name, ext := range map[string]map[string]string{
		"missing":        {policy.ExtRoute: "x"},
		"not JSON":       {policy.ExtRoute: "x", policy.ExtPolicy: "{"},
		"unknown field":  {policy.ExtRoute: "x", policy.ExtPolicy: `{"id":"x","anonymous":true,"bogus":1}`},
		"no requirement": {policy.ExtRoute: "x", policy.ExtPolicy: `{"id":"x"}`},
		"no extensions":  nil,
	} {
		t.Run(name, func(t *testing.T) {
			req := bearerReq(t, protectedRoute, tok)
			req.Attributes.ContextExtensions = ext
			if got := httpStatus(check(t, c, req)); got != 403 {
				t.Fatalf("status %d, want 403", got)
			}
		})
	}
	if n := reasons(t, s)["deny/"+reasonPolicy]; n != 5 {
		t.Fatalf("policy_error counted %v times", n)
	}
}

func okHeaders(r *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range r.GetOkResponse().GetHeaders() {
		if h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			out[h.GetHeader().GetKey()] = "APPEND!"
			continue
		}
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

func TestHeadersAndMetadata(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p)})
	route := policy.Route{ID: "orders.getOrder", AnyOf: []policy.Requirement{{Scopes: []string{"orders:read"}}},
		Headers: []string{"x-tenant"}, RateLimitHeaders: []string{"x-tenant", "x-api-key"}}
	client := map[string]string{
		"x-user-id":       "spoofed",
		"x-client-id":     "spoofed",
		"x-tenant":        "t1",
		"cookie":          "secret",
		"x-internal":      "1",
		"accept":          "application/json",
		"x-forwarded-for": "203.0.113.7",
	}

	t.Run("user token", func(t *testing.T) {
		h := map[string]string{"authorization": "Bearer " + mint(t, p.key, "alice", []string{"orders:read"}, nil)}
		for k, v := range client {
			h[k] = v
		}
		r := check(t, c, request(t, route, h))
		if httpStatus(r) != 200 {
			t.Fatalf("status %d", httpStatus(r))
		}
		if got := okHeaders(r); len(got) != 2 || got["X-User-Id"] != "alice" || got["X-Token-Issuer"] != testIss {
			t.Errorf("set headers %v", got)
		}
		want := []string{"x-client-id", "authorization", "cookie", "x-internal"}
		if got := r.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, want) {
			t.Errorf("removed %v, want %v", got, want)
		}
		md := r.GetDynamicMetadata().AsMap()
		wantMD := map[string]any{"subject": "alice", "client": "sub:alice", "header:x-tenant": "h:t1", "header:x-api-key": "ip:203.0.113.7"}
		if len(md) != len(wantMD) {
			t.Errorf("metadata %v", md)
		}
		for k, v := range wantMD {
			if md[k] != v {
				t.Errorf("metadata %s = %v, want %v", k, md[k], v)
			}
		}
	})

	t.Run("client credentials token", func(t *testing.T) {
		tok := mint(t, p.key, "svc-1", []string{"orders:read"}, map[string]any{"client_id": "svc-1"})
		r := check(t, c, bearerReq(t, route, tok))
		if got := okHeaders(r); got["X-User-Id"] != "svc-1" || got["X-Client-Id"] != "svc-1" {
			t.Errorf("set headers %v", got)
		}
		if md := r.GetDynamicMetadata().AsMap(); md["client"] != "cid:svc-1" {
			t.Errorf("client %v", md["client"])
		}
		// A user token carrying the client it was issued to stays keyed by subject.
		tok = mint(t, p.key, "bob", []string{"orders:read"}, map[string]any{"client_id": "web"})
		if md := check(t, c, bearerReq(t, route, tok)).GetDynamicMetadata().AsMap(); md["client"] != "sub:bob" {
			t.Errorf("client %v", md["client"])
		}
	})

	// Keycloak's shapes, with the default claims: a user token names its client only in azp
	// and its scopes may come as scp; a client-credentials token carries the service
	// account's UUID as sub, so its bucket is that account's, one per client.
	t.Run("keycloak tokens", func(t *testing.T) {
		const user, account = "6f1c2a2e-0000-4000-8000-000000000001", "6f1c2a2e-0000-4000-8000-000000000002"
		tok := mint(t, p.key, user, nil, map[string]any{"azp": "web", "scope": nil, "scp": []string{"orders:read"}})
		r := check(t, c, bearerReq(t, route, tok))
		if got := okHeaders(r); httpStatus(r) != 200 || got["X-Client-Id"] != "web" || got["X-User-Id"] != user {
			t.Errorf("user token: %d, headers %v", httpStatus(r), got)
		}
		if md := r.GetDynamicMetadata().AsMap(); md["client"] != "sub:"+user {
			t.Errorf("user token: client %v", md["client"])
		}
		tok = mint(t, p.key, account, []string{"orders:read"}, map[string]any{"azp": "billing", "client_id": "billing"})
		r = check(t, c, bearerReq(t, route, tok))
		if got := okHeaders(r); got["X-Client-Id"] != "billing" {
			t.Errorf("client-credentials token: headers %v", got)
		}
		if md := r.GetDynamicMetadata().AsMap(); md["client"] != "sub:"+account {
			t.Errorf("client-credentials token: client %v", md["client"])
		}
	})

	t.Run("anonymous", func(t *testing.T) {
		anon := route
		anon.Anonymous, anon.AnyOf = true, nil
		r := check(t, c, request(t, anon, client))
		if httpStatus(r) != 200 {
			t.Fatalf("status %d", httpStatus(r))
		}
		if got := okHeaders(r); len(got) != 0 {
			t.Errorf("anonymous request got identity headers %v", got)
		}
		want := []string{"x-client-id", "x-token-issuer", "x-user-id", "cookie", "x-internal"}
		if got := r.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, want) {
			t.Errorf("removed %v, want %v", got, want)
		}
		md := r.GetDynamicMetadata().AsMap()
		if md["subject"] != "" || md["client"] != "ip:203.0.113.7" || md["header:x-tenant"] != "h:t1" {
			t.Errorf("metadata %v", md)
		}
	})

	t.Run("authorization forwarded when allowed", func(t *testing.T) {
		fwd := route
		fwd.Headers = []string{"authorization", "x-tenant"}
		r := check(t, c, bearerReq(t, fwd, mint(t, p.key, "alice", []string{"orders:read"}, nil)))
		if slices.Contains(r.GetOkResponse().GetHeadersToRemove(), "authorization") {
			t.Errorf("authorization removed although allowed")
		}
	})

	t.Run("header_map instead of headers", func(t *testing.T) {
		req := bearerReq(t, route, mint(t, p.key, "alice", []string{"orders:read"}, nil))
		hm := headerMap(req.Attributes.Request.Http.Headers)
		req.Attributes.Request.Http.Headers = nil
		req.Attributes.Request.Http.HeaderMap = hm
		if got := httpStatus(check(t, c, req)); got != 200 {
			t.Fatalf("status %d", got)
		}
	})
}

// Behind xffTrustedHops proxies the ip: fall-back is the client address Envoy trusts, not
// the proxy that connected, and a client-forged X-Forwarded-For entry is never used.
func TestClientAddressBehindTrustedProxies(t *testing.T) {
	attrs := request(t, protectedRoute, nil).GetAttributes() // peer 203.0.113.7 (the load balancer)
	for _, tc := range []struct {
		xff  string
		hops int
		want string
	}{
		{"", 0, "203.0.113.7"},
		{"198.51.100.1, 203.0.113.7", 0, "203.0.113.7"},
		{"198.51.100.1, 203.0.113.7", 1, "198.51.100.1"},
		{"6.6.6.6, 198.51.100.1, 203.0.113.7", 1, "198.51.100.1"}, // forged first entry ignored
		{"203.0.113.7", 1, "203.0.113.7"},                         // too short: the peer
	} {
		h := map[string]string{}
		if tc.xff != "" {
			h["x-forwarded-for"] = tc.xff
		}
		if got := clientAddress(attrs, h, tc.hops); got != tc.want {
			t.Errorf("xff %q hops %d: %s, want %s", tc.xff, tc.hops, got, tc.want)
		}
	}
}

// With authz.decisionCacheTTL an allow that depends only on the token and the route is offered
// to the edge cache, with the identity headers to set and remove, never past the token's exp.
func TestEdgeCacheOffer(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Authz.DecisionCacheTTL = config.Duration{Duration: 2 * time.Second}
	_, c := startServer(t, deps{cfg: cfg})
	offer := func(r *authv3.CheckResponse) map[string]any {
		t.Helper()
		if httpStatus(r) != 200 {
			t.Fatalf("status %d", httpStatus(r))
		}
		m, _ := r.GetDynamicMetadata().AsMap()[policy.MetaCache].(map[string]any)
		return m
	}

	got := offer(check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", []string{"orders:read"}, nil))))
	want := map[string]any{"ttl_ms": 2000.0, "set": map[string]any{"x-token-issuer": testIss, "x-user-id": "alice"}, "del": []any{"x-client-id"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("offer %v, want %v", got, want)
	}

	soon := mint(t, p.key, "bob", []string{"orders:read"}, map[string]any{"exp": time.Now().Add(1500 * time.Millisecond).Unix()})
	if ttl, _ := offer(check(t, c, bearerReq(t, protectedRoute, soon)))["ttl_ms"].(float64); ttl <= 0 || ttl > 1500 {
		t.Errorf("a token expiring within the TTL is offered for %vms", ttl)
	}

	byHeader := protectedRoute
	byHeader.RateLimitHeaders = []string{"x-tenant"}
	if got := offer(check(t, c, bearerReq(t, byHeader, mint(t, p.key, "alice", []string{"orders:read"}, nil)))); got != nil {
		t.Errorf("an allow whose rate-limit key comes from a request header was offered: %v", got)
	}
	anon := protectedRoute
	anon.Anonymous, anon.AnyOf = true, nil
	if got := offer(check(t, c, request(t, anon, nil))); got != nil {
		t.Errorf("an anonymous allow (keyed by address) was offered: %v", got)
	}
	// A route that takes API keys too: a key sent beside a cached token must still be checked.
	withKey := protectedRoute
	withKey.AnyOf = append([]policy.Requirement{{APIKey: &policy.APIKey{Scheme: "k", In: "query", Name: "api_key"}}}, protectedRoute.AnyOf...)
	if got := offer(check(t, c, bearerReq(t, withKey, mint(t, p.key, "alice", []string{"orders:read"}, nil)))); got != nil {
		t.Errorf("a token's allow on a route that takes API keys was offered: %v", got)
	}
}

// A token with a quota plan (claims.plan) is not offered to the edge cache, which would replay
// the allow without the plan and count the request against the default.
func TestEdgeCacheKeepsPlans(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Authz.DecisionCacheTTL = config.Duration{Duration: 2 * time.Second}
	cfg.Claims.Plan = config.ClaimNames{"plan"}
	_, c := startServer(t, deps{cfg: cfg})
	r := check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", []string{"orders:read"}, map[string]any{"plan": "gold"})))
	md := r.GetDynamicMetadata().AsMap()
	if md[policy.MetaPlan] != "gold" || md[policy.MetaCache] != nil {
		t.Errorf("plan %v, cache offer %v; want gold and none", md[policy.MetaPlan], md[policy.MetaCache])
	}
}
