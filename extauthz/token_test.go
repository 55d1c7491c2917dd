package extauthz

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/policy"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// flip changes one character in the middle of a segment so the bytes really change
// (the last base64 character may only carry padding bits).
func flip(seg string) string {
	i := len(seg) / 2
	c := byte('A')
	if seg[i] == 'A' {
		c = 'B'
	}
	return seg[:i] + string(c) + seg[i+1:]
}

// hmacWithPublicKey is the classic key-confusion attack: HS256 keyed with the RSA public
// key (PEM), carrying the real kid.
func hmacWithPublicKey(t *testing.T, k *devissuer.Key) string {
	t.Helper()
	var raw any
	if err := exportPublic(k, &raw); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	payload := `{"iss":"` + testIss + `","aud":"api","sub":"mallory","scope":"orders:read","exp":` +
		itoa(time.Now().Add(time.Hour).Unix()) + `}`
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.KeyID())
	_ = hdr.Set(jws.TypeKey, "JWT")
	b, err := jws.Sign([]byte(payload), jws.WithKey(jwa.HS256(), secret, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRefusedTokens(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	s, c := startServer(t, deps{cfg: testConfig(p)})
	k := p.key
	good := mint(t, k, "alice", []string{"orders:read"}, nil)
	parts := strings.Split(good, ".")
	other, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	evilPayload := b64(`{"iss":"` + testIss + `","aud":"api","sub":"root","scope":"orders:read admin","exp":` + itoa(now.Add(time.Hour).Unix()) + `}`)
	noneHdr := b64(`{"alg":"none","typ":"JWT","kid":"` + k.KeyID() + `"}`)
	big := mint(t, k, "alice", []string{"orders:read"}, map[string]any{"pad": strings.Repeat("x", 17000)})

	cases := []struct {
		name, header, reason string
	}{
		{"alg none", "Bearer " + noneHdr + "." + parts[1] + ".", verify.ReasonAlgorithm},
		{"alg none with signature", "Bearer " + noneHdr + "." + parts[1] + "." + parts[2], verify.ReasonAlgorithm},
		{"HS256 keyed with RSA public key", "Bearer " + hmacWithPublicKey(t, k), verify.ReasonAlgorithm},
		{"unknown kid", "Bearer " + mint(t, other, "alice", []string{"orders:read"}, nil), verify.ReasonUnknownKey},
		{"expired", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"exp": now.Add(-5 * time.Minute).Unix()}), verify.ReasonExpired},
		{"nbf in the future", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}), verify.ReasonNotYetValid},
		{"iat in the future", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"iat": now.Add(5 * time.Minute).Unix()}), verify.ReasonInvalid},
		{"no exp", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"exp": nil}), verify.ReasonMissingClaim},
		{"no iat (a revocation could not bound its life)", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"iat": nil}), verify.ReasonMissingClaim},
		{"issued long before, valid past maxTokenLifetime from iat", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(23 * time.Hour).Unix()}), verify.ReasonLifetime},
		{"lifetime beyond maxTokenLifetime", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"exp": now.Add(72 * time.Hour).Unix()}), verify.ReasonLifetime},
		{"wrong iss", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"iss": "https://evil.test/"}), verify.ReasonUnknownIssuer},
		{"no iss", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"iss": nil}), verify.ReasonUnknownIssuer},
		{"wrong aud", "Bearer " + mint(t, k, "alice", []string{"orders:read"}, map[string]any{"aud": "other"}), verify.ReasonAudience},
		{"tampered payload", "Bearer " + parts[0] + "." + evilPayload + "." + parts[2], verify.ReasonInvalid},
		{"tampered signature", "Bearer " + parts[0] + "." + parts[1] + "." + flip(parts[2]), verify.ReasonInvalid},
		{"tampered header", "Bearer " + flip(parts[0]) + "." + parts[1] + "." + parts[2], verify.ReasonInvalid},
		{"truncated", "Bearer " + good[:len(good)-10], verify.ReasonInvalid},
		{"signature dropped", "Bearer " + parts[0] + "." + parts[1] + ".", verify.ReasonInvalid},
		{"three dots", "Bearer " + good + ".x", verify.ReasonMalformed},
		{"one dot", "Bearer " + parts[0] + "." + parts[1], verify.ReasonMalformed},
		{"non-base64 character", "Bearer " + parts[0] + "." + parts[1][:5] + "*" + parts[1][6:] + "." + parts[2], verify.ReasonMalformed},
		{"padding", "Bearer " + good + "==", verify.ReasonMalformed},
		{"bad base64 length", "Bearer " + parts[0] + ".a." + parts[2], verify.ReasonMalformed},
		{"payload not JSON", "Bearer " + parts[0] + "." + b64("not json") + "." + parts[2], verify.ReasonInvalid},
		{"over 16 KiB", "Bearer " + big, verify.ReasonTooLarge},
		{"no scheme", good, verify.ReasonBadHeader},
		{"lowercase bearer", "bearer " + good, verify.ReasonBadHeader},
		{"two spaces", "Bearer  " + good, verify.ReasonMalformed},
		{"trailing space", "Bearer " + good + " ", verify.ReasonMalformed},
		{"Basic", "Basic YWxpY2U6c2VjcmV0", verify.ReasonBadHeader},
		{"empty bearer", "Bearer ", verify.ReasonBadHeader},
		{"two Authorization headers joined by Envoy", "Bearer " + good + ",Bearer " + good, verify.ReasonMalformed},
		{"empty header", "", verify.ReasonBadHeader},
	}
	if len(big) <= config.Default().Authz.MaxTokenBytes {
		t.Fatalf("big token is only %d bytes", len(big))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := reasons(t, s)["deny/"+tc.reason]
			r := check(t, c, request(t, protectedRoute, map[string]string{"authorization": tc.header}))
			if after := reasons(t, s)["deny/"+tc.reason]; after != before+1 {
				t.Errorf("reason %s not counted (%v)", tc.reason, reasons(t, s))
			}
			if got := httpStatus(r); got != 401 {
				t.Fatalf("status %d, want 401", got)
			}
			if got := deniedHeader(r, "www-authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if ct := deniedHeader(r, "content-type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			if b := r.GetDeniedResponse().GetBody(); !strings.Contains(b, `"error":"invalid_token"`) {
				t.Errorf("body %s", b)
			}
		})
	}
	// The same token, unmodified, is fine: the refusals above are about the changes.
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, good))); got != 200 {
		t.Fatalf("valid token: %d", got)
	}
}

func TestAcceptedTokenShapes(t *testing.T) {
	t.Parallel()
	es, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	ed, err := devissuer.Generate("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	p := newIdP(t, rsaKey(t), es, ed)
	_, c := startServer(t, deps{cfg: testConfig(p)})
	now := time.Now()
	cases := map[string]string{
		"RS256":             mint(t, rsaKey(t), "alice", []string{"orders:read"}, nil),
		"ES256":             mint(t, es, "alice", []string{"orders:read"}, nil),
		"EdDSA":             mint(t, ed, "alice", []string{"orders:read"}, nil),
		"scp array":         mint(t, es, "alice", nil, map[string]any{"scp": []string{"orders:read", "x"}}),
		"scp string":        mint(t, es, "alice", nil, map[string]any{"scp": "x orders:read"}),
		"aud array":         mint(t, es, "alice", []string{"orders:read"}, map[string]any{"aud": []string{"other", "api"}}),
		"exp within leeway": mint(t, es, "alice", []string{"orders:read"}, map[string]any{"exp": now.Add(-10 * time.Second).Unix()}),
		"nbf within leeway": mint(t, es, "alice", []string{"orders:read"}, map[string]any{"nbf": now.Add(10 * time.Second).Unix()}),
		"no jti, no sub":    mint(t, es, "", []string{"orders:read"}, map[string]any{"jti": nil}),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 200 {
				t.Fatalf("status %d", got)
			}
		})
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	t.Parallel()
	es, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	p := newIdP(t, rsaKey(t), es)
	cfg := testConfig(p)
	cfg.Issuers[0].Algorithms = []string{"ES256"}
	_, c := startServer(t, deps{cfg: cfg})
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, rsaKey(t), "a", []string{"orders:read"}, nil)))); got != 401 {
		t.Fatalf("RS256 outside the allow-list: %d", got)
	}
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, es, "a", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("ES256: %d", got)
	}
}

// A key that declares alg RS256 must not verify a PS256 token even though the type fits.
func TestKeyDeclaredAlgorithmWins(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Issuers[0].Algorithms = []string{"RS256", "PS256"}
	_, c := startServer(t, deps{cfg: cfg})
	tok := jwt.New()
	_ = tok.Set("iss", testIss)
	_ = tok.Set("aud", testAud)
	_ = tok.Set("scope", "orders:read")
	_ = tok.Set("exp", time.Now().Add(time.Hour).Unix())
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.PS256(), p.key.Private()))
	if err != nil {
		t.Fatal(err)
	}
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, string(b)))); got != 401 {
		t.Fatalf("PS256 with an RS256 key: %d", got)
	}
}

var _ = policy.Route{}

// A token with many roles (9 KB) verifies with the defaults; one over authz.maxTokenBytes is
// refused with a message that gives the size, and a larger cap lets it through.
func TestTokenSizeCap(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	roles := func(n int) map[string]any {
		r := make([]string, n)
		for i := range r {
			r[i] = fmt.Sprintf("realm-role-%04d-with-a-long-name", i)
		}
		return map[string]any{"roles": r}
	}
	nineKB := mint(t, p.key, "alice", []string{"orders:read"}, roles(250))
	seventeenKB := mint(t, p.key, "alice", []string{"orders:read"}, roles(480))
	if len(nineKB) < 9000 || len(seventeenKB) <= 16<<10 {
		t.Fatalf("token sizes %d and %d", len(nineKB), len(seventeenKB))
	}
	_, c := startServer(t, deps{cfg: testConfig(p)})
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, nineKB))); got != 200 {
		t.Errorf("a 9 KB token: %d, want 200", got)
	}
	r := check(t, c, bearerReq(t, protectedRoute, seventeenKB))
	if httpStatus(r) != 401 || !strings.Contains(r.GetDeniedResponse().GetBody(), "larger than 16384 bytes (gateway.yaml authz.maxTokenBytes)") {
		t.Errorf("a 17 KB token: %d %s", httpStatus(r), r.GetDeniedResponse().GetBody())
	}
	cfg := testConfig(p)
	cfg.Authz.MaxTokenBytes = 32 << 10
	_, c = startServer(t, deps{cfg: cfg})
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, seventeenKB))); got != 200 {
		t.Errorf("a 17 KB token under a 32 KiB cap: %d, want 200", got)
	}
}

// An issuer with requireType: at+jwt accepts access tokens (typ at+jwt or application/at+jwt)
// and refuses an ID token of the same issuer and audience (typ JWT) or a token without typ.
func TestRequireType(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Issuers[0].RequireType = "at+jwt"
	s, c := startServer(t, deps{cfg: cfg})
	typed := func(typ string) string {
		plain := mint(t, p.key, "alice", []string{"orders:read"}, nil)
		tok, err := jwt.ParseInsecure([]byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		h := jws.NewHeaders()
		if typ != "" {
			if err := h.Set(jws.TypeKey, typ); err != nil {
				t.Fatal(err)
			}
		}
		b, err := jwt.Sign(tok, jwt.WithKey(p.key.Algorithm(), p.key.Private(), jws.WithProtectedHeaders(h)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for typ, want := range map[string]int{"at+jwt": 200, "application/at+jwt": 200, "AT+JWT": 200, "JWT": 401, "": 401} {
		before := reasons(t, s)["deny/"+verify.ReasonTokenType]
		if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, typed(typ)))); got != want {
			t.Errorf("typ %q: %d, want %d", typ, got, want)
		}
		if want == 401 && reasons(t, s)["deny/"+verify.ReasonTokenType] != before+1 {
			t.Errorf("typ %q: not counted as %s", typ, verify.ReasonTokenType)
		}
	}
}
