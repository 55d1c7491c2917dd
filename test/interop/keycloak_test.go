//go:build interop

package interop

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// TestMain removes the specgate binary the stack ran.
func TestMain(m *testing.M) { testutil.Main(m) }

// quota allows each client (the rate-limit key client) two calls a minute.
const quota = `openapi: 3.1.0
info: {title: Quota, version: 1.0.0}
x-specgate: {service: quota, backend: "http://127.0.0.1:{{PORT}}", basePath: /quota}
security: [{oauth: [orders:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {orders:read: r}}}}
paths:
  /items:
    get: {operationId: items, x-specgate: {rateLimits: [{requests: 2, per: minute, key: client}]}, responses: {"200": {description: ok}}}
`

// The whole gateway (control plane, authz, ratelimit, real Envoy, Redis) with a real Keycloak
// 26 as the issuer, with gateway.yaml's defaults for claims and headers: client-credentials
// and password-grant tokens, scopes, identity headers, a rate-limit bucket per caller, a key
// rotation, revocation by jti and by subject, and an expired token.
func TestKeycloak(t *testing.T) {
	kc := startKeycloak(t)
	r := kc.setUpRealm()
	backend := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec, "quota.yaml": quota},
		Vars: map[string]string{"PORT": backend.Port(), "LIMIT": "10"},
		Configure: func(c *config.Gateway) {
			// Discovery: no jwksUri. The defaults for claims and claimHeaders stay.
			c.Issuers = []config.Issuer{{Issuer: r.issuer, Audiences: []string{r.audience}, Algorithms: []string{"RS256"}}}
			c.Authz.Timeout.Duration = time.Second
		}})
	orders := s.Public + "/shop/orders"

	t.Run("client credentials", func(t *testing.T) {
		tok := kc.clientToken(r, "orders:read")
		c := claims(t, tok)
		if got := get(t, orders, tok); got.status != 200 {
			t.Fatalf("client-credentials token with orders:read: %d %s", got.status, got.body)
		}
		h := backend.Last().Header
		if h.Get("X-Client-Id") != r.ccClient || h.Get("X-User-Id") != c["sub"] || h.Get("X-Token-Issuer") != r.issuer {
			t.Errorf("identity headers: X-Client-Id %q X-User-Id %q (sub %v) X-Token-Issuer %q", h.Get("X-Client-Id"),
				h.Get("X-User-Id"), c["sub"], h.Get("X-Token-Issuer"))
		}
		if got := get(t, orders, kc.clientToken(r, "")); got.status != 403 || !strings.Contains(got.header.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("without orders:read: %d %q", got.status, got.header.Get("WWW-Authenticate"))
		}
	})

	t.Run("password grant", func(t *testing.T) {
		tok := kc.userToken(r, "orders:read")
		c := claims(t, tok)
		if _, ok := c["client_id"]; ok {
			t.Logf("note: this Keycloak puts client_id in user tokens too")
		}
		if got := get(t, orders, tok); got.status != 200 {
			t.Fatalf("user token: %d %s", got.status, got.body)
		}
		h := backend.Last().Header
		if h.Get("X-Client-Id") != r.webClient || h.Get("X-User-Id") != c["sub"] || c["sub"] == r.user {
			t.Errorf("X-Client-Id %q (want %s, from azp), X-User-Id %q (sub %v, a UUID)", h.Get("X-Client-Id"), r.webClient,
				h.Get("X-User-Id"), c["sub"])
		}
	})

	t.Run("a bucket per caller", func(t *testing.T) {
		items := s.Public + "/quota/items"
		user := kc.userToken(r, "orders:read")
		for i, want := range []int{200, 200, 429} {
			if got := get(t, items, user); got.status != want {
				t.Fatalf("user token, call %d: %d, want %d", i+1, got.status, want)
			}
		}
		// Another login of the same user shares the bucket (sub:<user UUID>); the
		// client-credentials client has its own (sub:<service account UUID>).
		if got := get(t, items, kc.userToken(r, "orders:read")); got.status != 429 {
			t.Errorf("the same user's new token: %d, want 429", got.status)
		}
		if got := get(t, items, kc.clientToken(r, "orders:read")); got.status != 200 {
			t.Errorf("the client-credentials client: %d, want 200 (its own bucket)", got.status)
		}
	})

	t.Run("refusals say why", func(t *testing.T) {
		tok := kc.userToken(r, "orders:read")
		if got := get(t, orders, tok[:len(tok)-4]+"AAAA"); got.status != 401 {
			t.Errorf("tampered signature: %d", got.status)
		}
		if got := get(t, orders, "not-a-jwt"); got.status != 401 || !strings.Contains(got.body, "not a compact JWS") {
			t.Errorf("malformed token: %d %s", got.status, got.body)
		}
		// The admin-cli token of the master realm: a real Keycloak token of an issuer the
		// gateway does not trust.
		if got := get(t, orders, kc.admin); got.status != 401 || !strings.Contains(got.body, "issuer (iss) is not trusted") {
			t.Errorf("another realm's token: %d %s", got.status, got.body)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		current := kc.userToken(r, "orders:read")
		old := kid(t, current)
		// The attack of the report: a token with a made-up kid just before the rotation (once
		// this held new keys out for the 10s refresh cooldown).
		forged := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"made-up"}`)) +
			current[strings.Index(current, "."):]
		if got := get(t, orders, forged); got.status != 401 || !strings.Contains(got.body, "signing key (kid)") {
			t.Fatalf("made-up kid: %d %s", got.status, got.body)
		}
		kc.rotateKeys(r)
		tok := kc.userToken(r, "orders:read")
		if kid(t, tok) == old {
			t.Fatalf("Keycloak still signs with %s after the rotation", old)
		}
		took := testutil.Eventually(t, 10*time.Second, "a token signed with the new key accepted", func() bool {
			return get(t, orders, tok).status == 200
		})
		t.Logf("token of the rotated-in key accepted %s after its first try", took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("the new key took %s, want about a second at most", took)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		byJTI := kc.userToken(r, "orders:read")
		older := kc.userToken(r, "orders:read")
		if get(t, orders, byJTI).status != 200 || get(t, orders, older).status != 200 {
			t.Fatal("fresh tokens refused")
		}
		if code, body := revoke(t, s, map[string]any{"jti": claims(t, byJTI)["jti"]}); code != 200 {
			t.Fatalf("revoke jti: %d %s", code, body)
		}
		if got := get(t, orders, byJTI); got.status != 401 || !strings.Contains(got.body, "revoked") {
			t.Errorf("revoked by jti: %d %s", got.status, got.body)
		}
		if get(t, orders, older).status != 200 {
			t.Fatal("revoking one jti refused another token")
		}
		// By subject, named by one of the user's tokens (Keycloak's sub is a UUID).
		if code, body := revoke(t, s, map[string]any{"token": older, "bySubject": true}); code != 200 {
			t.Fatalf("revoke by subject: %d %s", code, body)
		}
		if got := get(t, orders, older); got.status != 401 {
			t.Errorf("the subject's token after revocation by subject: %d", got.status)
		}
		// A login in the same second is refused too (iat counts seconds); one later passes.
		time.Sleep(1100 * time.Millisecond)
		if got := get(t, orders, kc.userToken(r, "orders:read")); got.status != 200 {
			t.Errorf("a new login after the subject revocation: %d %s", got.status, got.body)
		}
		if get(t, orders, kc.clientToken(r, "orders:read")).status != 200 {
			t.Error("another subject refused")
		}
	})

	t.Run("expired", func(t *testing.T) {
		// A client whose tokens live 1s: past the 30s leeway the gateway refuses them.
		kc.api("POST", "/"+r.name+"/clients", map[string]any{"clientId": "short", "secret": "short-secret",
			"publicClient": false, "serviceAccountsEnabled": true, "standardFlowEnabled": false,
			"attributes": map[string]string{"access.token.lifespan": "1"},
			"protocolMappers": []any{map[string]any{"name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
				"config": map[string]string{"included.custom.audience": r.audience, "access.token.claim": "true"}}}})
		tok := kc.token(r.name, url.Values{"grant_type": {"client_credentials"}, "client_id": {"short"},
			"client_secret": {"short-secret"}})["access_token"].(string)
		parsed, err := jwt.ParseInsecure([]byte(tok))
		if err != nil {
			t.Fatal(err)
		}
		exp, _ := parsed.Expiration()
		if exp.Sub(time.Now()) > 5*time.Second {
			t.Fatalf("the short client's token expires at %s", exp)
		}
		time.Sleep(time.Until(exp.Add(31 * time.Second)))
		if got := get(t, orders, tok); got.status != 401 || !strings.Contains(got.body, "expired") {
			t.Errorf("expired token: %d %s", got.status, got.body)
		}
	})
}

// kid is the key id in a token's header.
func kid(t *testing.T, tok string) string {
	t.Helper()
	msg, err := jws.Parse([]byte(tok))
	if err != nil || len(msg.Signatures()) == 0 {
		t.Fatalf("not a JWS: %v", err)
	}
	k, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	return k
}

type answer struct {
	status int
	body   string
	header http.Header
}

func get(t *testing.T, url, token string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

func revoke(t *testing.T, s *stack.Stack, body map[string]any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+s.Authz[0].HTTP+"/v1/revocations", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+stack.AdminToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}
