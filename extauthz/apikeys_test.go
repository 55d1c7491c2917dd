package extauthz

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/specgate/specgate/policy"
)

var keyRoute = policy.Route{ID: "partner.orders", AnyOf: []policy.Requirement{
	{Scopes: []string{"orders:read"}, APIKey: &policy.APIKey{Scheme: "ApiKeyAuth", In: "header", Name: "X-API-Key"}},
	{APIKey: &policy.APIKey{Scheme: "QueryKey", In: "query", Name: "api_key"}},
	{APIKey: &policy.APIKey{Scheme: "CookieKey", In: "cookie", Name: "session_key"}},
}, Headers: []string{"cookie", "x-api-key"}} // forwarded, yet the key is removed

// createKey makes a key through the admin API and returns it.
func (r *replica) createKey(t testing.TB, body map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", r.http+"/v1/keys", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// What a key check decides, from where the request carries the key, and what it leaves the
// backend: every case through the gRPC API of a running replica whose keys live in a file
// store, and again after a restart (a key issued is never lost; a revoked one stays revoked).
func TestAPIKeyChecks(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Revocation.Store = "file://" + filepath.Join(t.TempDir(), "revocations.jsonl")
	r := startReplica(t, cfg, "")
	code, made := r.createKey(t, map[string]any{"client": "acme", "scopes": []string{"orders:read"}, "plan": "gold"})
	key, _ := made["key"].(string)
	if code != 201 || key == "" {
		t.Fatalf("create: %d %v", code, made)
	}
	_, other := r.createKey(t, map[string]any{"client": "bob"})
	bobKey := other["key"].(string)
	for _, bad := range []map[string]any{
		{"client": ""}, {"client": "a b"}, {"client": "x", "plan": "Gold"}, {"client": "x", "scopes": []string{""}},
		{"client": "x", "expires": time.Now().Add(-time.Hour)}, {"client": "x", "expires": time.Now().Add(500 * 24 * time.Hour)},
		{"client": "x", "extra": 1},
	} {
		if code, out := r.createKey(t, bad); code != 400 {
			t.Errorf("create %v: %d %v, want 400", bad, code, out)
		}
	}

	type want struct {
		status       int
		client, plan string
		removedQuery []string
		cookie       string
	}
	run := func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			headers map[string]string
			path    string
			want    want
		}{
			{"header", map[string]string{"x-api-key": key}, "/orders/1", want{status: 200, client: "acme", plan: "gold"}},
			{"query", nil, "/orders/1?api_key=" + key + "&q=1", want{status: 200, client: "acme", plan: "gold", removedQuery: []string{"api_key"}}},
			{"query given twice", nil, "/orders/1?api_key=" + key + "&api_key=" + key, want{status: 401}},
			{"query under an encoded name", nil, "/orders/1?api%5Fkey=" + key, want{status: 401}},
			{"cookie, the others kept", map[string]string{"cookie": "theme=dark; session_key=" + key + "; lang=fr"}, "/orders/1", want{status: 200, client: "acme", plan: "gold", cookie: "theme=dark; lang=fr"}},
			{"unknown key", map[string]string{"x-api-key": "sgk_unknown"}, "/orders/1", want{status: 401}},
			{"key without the header's scope, also in the query", map[string]string{"x-api-key": bobKey}, "/orders/1", want{status: 403}},
			{"no key at all", nil, "/orders/1", want{status: 401}},
			{"a bearer token where only keys open", map[string]string{"authorization": "Bearer " + mint(t, p.key, "alice", []string{"orders:read"}, nil)}, "/orders/1", want{status: 401}},
		} {
			req := request(t, keyRoute, tc.headers)
			req.Attributes.Request.Http.Path = tc.path
			resp := check(t, r.c, req)
			if got := httpStatus(resp); got != tc.want.status {
				t.Errorf("%s: %d %s, want %d", tc.name, got, resp.GetDeniedResponse().GetBody(), tc.want.status)
				continue
			}
			if tc.want.status != 200 {
				continue
			}
			md := resp.GetDynamicMetadata().GetFields()
			ok := resp.GetOkResponse()
			if md[policy.MetaClient].GetStringValue() != "key:"+tc.want.client || md[policy.MetaPlan].GetStringValue() != tc.want.plan {
				t.Errorf("%s: client %q plan %q", tc.name, md[policy.MetaClient].GetStringValue(), md[policy.MetaPlan].GetStringValue())
			}
			if _, cached := md[policy.MetaCache]; cached {
				t.Errorf("%s: a key's allow is offered to the edge cache", tc.name)
			}
			if !slices.Equal(ok.GetQueryParametersToRemove(), tc.want.removedQuery) {
				t.Errorf("%s: query parameters removed %v, want %v", tc.name, ok.GetQueryParametersToRemove(), tc.want.removedQuery)
			}
			if tc.name == "header" && !slices.Contains(ok.GetHeadersToRemove(), "x-api-key") {
				t.Errorf("header: the key header is not removed: %v", ok.GetHeadersToRemove())
			}
			if tc.want.cookie != "" && slices.Contains(ok.GetHeadersToRemove(), "cookie") {
				t.Errorf("%s: the cookie header is set and removed (Envoy removes after it sets)", tc.name)
			}
			var cookie string
			for _, h := range ok.GetHeaders() {
				if h.GetHeader().GetKey() == "cookie" {
					cookie = h.GetHeader().GetValue()
				}
			}
			if cookie != tc.want.cookie {
				t.Errorf("%s: the backend's cookie %q, want %q", tc.name, cookie, tc.want.cookie)
			}
		}
	}
	t.Run("before a restart", run)
	r.stop()
	r = startReplica(t, cfg, "")
	t.Run("after a restart", run)

	// Revoked, then restarted: still refused.
	req, _ := http.NewRequest("DELETE", r.http+"/v1/keys/"+made["id"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	r.stop()
	r = startReplica(t, cfg, "")
	if got := httpStatus(check(t, r.c, request(t, keyRoute, map[string]string{"x-api-key": key}))); got != 401 {
		t.Errorf("a revoked key after a restart: %d, want 401", got)
	}
}

// On a route that takes an API key or a token, the token must meet the token requirement
// itself: an API key requirement (no issuer, no scopes of the token's) lets no token in.
func TestTokenDoesNotMeetAPIKeyRequirement(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p), refreshCooldown: time.Hour})
	route := policy.Route{ID: "mixed.get", AnyOf: []policy.Requirement{
		{APIKey: &policy.APIKey{Scheme: "ApiKeyAuth", In: "header", Name: "X-API-Key"}},
		{Scopes: []string{"admin"}},
	}}
	if got := httpStatus(check(t, c, bearerReq(t, route, mint(t, p.key, "alice", nil, nil)))); got != 403 {
		t.Errorf("a token without the token requirement's scope: %d, want 403", got)
	}
	pinned := policy.Route{ID: "mixed.pinned", AnyOf: []policy.Requirement{
		{APIKey: &policy.APIKey{Scheme: "ApiKeyAuth", In: "header", Name: "X-API-Key"}},
		{Issuers: []string{"https://nobody.example/"}},
	}}
	if got := httpStatus(check(t, c, bearerReq(t, pinned, mint(t, p.key, "alice", nil, nil)))); got == 200 {
		t.Errorf("a token of an issuer the token requirement does not pin: %d, want a refusal", got)
	}
}
