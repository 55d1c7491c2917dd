package envoy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

const apiKeysSpec = `openapi: 3.1.0
info: {title: Partner, version: 1.0.0}
x-specgate: {service: partner, backend: "http://127.0.0.1:{{PORT}}", basePath: /partner}
security: [{ApiKeyAuth: ["orders:read"]}]
components:
  securitySchemes:
    ApiKeyAuth: {type: apiKey, in: header, name: X-API-Key}
    BotToken: {type: apiKey, in: header, name: Authorization, x-specgate-prefix: "Bot "}
    QueryKey: {type: apiKey, in: query, name: api_key}
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {"orders:read": r}}}}
paths:
  /orders:
    get: {operationId: orders, responses: {"200": {description: ok}}}
  /bot:
    get: {operationId: bot, security: [{BotToken: []}, {oauth: ["orders:read"]}], responses: {"200": {description: ok}}}
  /search:
    get: {operationId: search, security: [{QueryKey: []}], responses: {"200": {description: ok}}}
`

// API keys through real Envoy, two authz replicas and Redis, managed with the specgate CLI:
// a key made on one replica opens its scheme's operations on both (a header, Discord's
// "Authorization: Bot <key>" beside a token alternative, a query parameter), never reaches the
// backend, and names its client in X-Client-Id; a missing, unknown or under-scoped key is
// refused with the gateway's JSON naming the scheme; a revoked key is refused everywhere
// within a second.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	b := e2e.NewBackend(t, "partner")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"partner.yaml": apiKeysSpec}, Vars: map[string]string{"PORT": b.Port()}, AuthzReplicas: 2})
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(testutil.Specgate(t), append(args, "--token", stack.AdminToken)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("specgate %s: %v %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	admin := func(i int) string { return "http://" + s.Authz[i].HTTP }
	key := cli("keys", "create", "--server", admin(0), "--client", "acme", "--scopes", "orders:read", "--plan", "gold")
	weak := cli("keys", "create", "--server", admin(1), "--client", "weak")
	if !strings.HasPrefix(key, "sgk_") || !strings.HasPrefix(weak, "sgk_") {
		t.Fatalf("keys create printed %q and %q, want sgk_ keys", key, weak)
	}
	get := func(path string, header ...string) (int, string) {
		req, _ := http.NewRequest("GET", s.Public+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	errorOf := func(body string) (code, scheme string) {
		var v struct{ Error, Scheme string }
		_ = json.Unmarshal([]byte(body), &v)
		return v.Error, v.Scheme
	}
	// Both replicas know the keys (Envoy balances over them) within a second of creation.
	testutil.Eventually(t, time.Second, "every replica knowing the new keys", func() bool {
		for range 6 {
			if code, _ := get("/partner/orders", "X-API-Key", key); code != 200 {
				return false
			}
		}
		return true
	})
	last := b.Last()
	if last.Header.Get("X-API-Key") != "" || last.Header.Get("X-Client-Id") != "acme" {
		t.Errorf("the backend saw X-API-Key %q, X-Client-Id %q; want none and acme", last.Header.Get("X-API-Key"), last.Header.Get("X-Client-Id"))
	}
	for _, tc := range []struct {
		name, path          string
		header              []string
		want                int
		wantErr, wantScheme string
	}{
		{"no key", "/partner/orders", nil, 401, "missing_key", ""},
		{"unknown key", "/partner/orders", []string{"X-API-Key", "sgk_nope"}, 401, "invalid_key", "ApiKeyAuth"},
		{"key without the scope", "/partner/orders", []string{"X-API-Key", weak}, 403, "insufficient_scope", ""},
		{"Discord's Bot prefix", "/partner/bot", []string{"Authorization", "Bot " + key}, 200, "", ""},
		{"a token where a token is an alternative", "/partner/bot", []string{"Authorization", "Bearer " + s.Token("alice", "orders:read")}, 200, "", ""},
		{"a key without its prefix", "/partner/bot", []string{"Authorization", key}, 401, "invalid_token", ""},
		{"query parameter", "/partner/search?q=shoes&api_key=" + key, nil, 200, "", ""},
	} {
		code, body := get(tc.path, tc.header...)
		errCode, scheme := errorOf(body)
		if code != tc.want || errCode != tc.wantErr || scheme != tc.wantScheme {
			t.Errorf("%s: %d %s, want %d %s %s", tc.name, code, body, tc.want, tc.wantErr, tc.wantScheme)
		}
	}
	if last := b.Last(); last.URL.RawQuery != "q=shoes" || last.Header.Get("Authorization") != "" {
		t.Errorf("the backend saw query %q, Authorization %q: the key must not reach it", last.URL.RawQuery, last.Header.Get("Authorization"))
	}

	// Revoked through replica 1: refused through both within a second.
	var listed struct{ Keys []struct{ ID, Client string } }
	if err := json.Unmarshal([]byte(cli("keys", "list", "--server", admin(1), "-o", "json")), &listed); err != nil || len(listed.Keys) != 2 {
		t.Fatalf("keys list: %v %+v", err, listed)
	}
	id := listed.Keys[0].ID
	if listed.Keys[0].Client != "acme" {
		id = listed.Keys[1].ID
	}
	cli("keys", "revoke", "--server", admin(1), id)
	d := testutil.Eventually(t, time.Second, "the revoked key refused by every replica", func() bool {
		for range 6 {
			if code, _ := get("/partner/orders", "X-API-Key", key); code != 401 {
				return false
			}
		}
		return true
	})
	t.Logf("figure: a revoked API key refused by both replicas %s after keys revoke returned", d)
}

const plansSpec = `openapi: 3.1.0
info: {title: Search, version: 1.0.0}
x-specgate: {service: search, backend: "http://127.0.0.1:{{PORT}}", basePath: /search,
  rateLimits: [{key: client, per: minute, plans: {limits: {gold: 3, free: 1}, default: 2}}]}
security: [{ApiKeyAuth: []}, {oauth: []}]
components:
  securitySchemes:
    ApiKeyAuth: {type: apiKey, in: header, name: X-API-Key}
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {read: r}}}}
paths:
  /query:
    get: {operationId: query, responses: {"200": {description: ok}}}
`

// Quota plans through real Envoy and specgate ratelimit on Redis: each caller gets its plan's
// count per minute (an API key's plan, a token's plan claim with claims.plan set), a plan
// that is not listed and no plan get the default; the 429 and X-RateLimit-Limit say the
// caller's plan.
func TestQuotaPlans(t *testing.T) {
	t.Parallel()
	b := e2e.NewBackend(t, "search")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"search.yaml": plansSpec}, Vars: map[string]string{"PORT": b.Port()},
		Configure: func(c *config.Gateway) { c.Claims.Plan = config.ClaimNames{"plan"} }})
	newKey := func(client, plan string) string {
		out, err := exec.Command(testutil.Specgate(t), "keys", "create", "--server", "http://"+s.Authz[0].HTTP, "--token", stack.AdminToken,
			"--client", client, "--plan", plan).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	token := func(sub, plan string) string {
		tok, err := devissuer.Mint(s.Key, stack.Issuer, stack.Audience, sub, nil, time.Hour, map[string]any{"plan": plan})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name, header, value string
		allowed             int
	}{
		{"gold key", "X-API-Key", newKey("acme", "gold"), 3},
		{"free key", "X-API-Key", newKey("bob", "free"), 1},
		{"key without a plan", "X-API-Key", newKey("carol", ""), 2},
		{"token of plan gold", "Authorization", "Bearer " + token("dave", "gold"), 3},
		{"token of an unlisted plan", "Authorization", "Bearer " + token("erin", "platinum"), 2},
	} {
		var codes []int
		var limit string
		for range tc.allowed + 1 {
			req, _ := http.NewRequest("GET", s.Public+"/search/query", nil)
			req.Header.Set(tc.header, tc.value)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			if resp.StatusCode == 429 {
				limit = resp.Header.Get("X-RateLimit-Limit")
			}
		}
		want := strings.Repeat("200 ", tc.allowed) + "429"
		if got := strings.Trim(fmt.Sprint(codes), "[]"); got != want || !strings.HasPrefix(limit, fmt.Sprint(tc.allowed)) {
			t.Errorf("%s: %s with X-RateLimit-Limit %q, want %s and %d", tc.name, got, limit, want, tc.allowed)
		}
	}
}
