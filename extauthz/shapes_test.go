package extauthz

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/specgate/specgate/policy"
)

// signed is a token of the test IdP's key over payload as written, with extra protected
// header parameters.
func signed(t *testing.T, p *testIdP, payload string, header map[string]any) string {
	t.Helper()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, p.key.KeyID())
	_ = hdr.Set(jws.TypeKey, "JWT")
	for k, v := range header {
		if err := hdr.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := jws.Sign([]byte(payload), jws.WithKey(p.key.Algorithm(), p.key.Private(), jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Token shapes an IdP could sign by mistake or under an attacker's influence, each refused
// with 401 invalid_token instead of read one way by authz and another by a backend.
func TestAmbiguousTokenShapesRefused(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p)})
	now := time.Now().Unix()
	claims := func(more string) string {
		return fmt.Sprintf(`{"iss":%q,"aud":"api","iat":%d,"exp":%d,%s}`, testIss, now, now+3600, more)
	}
	admin := policy.Route{ID: "orders.purge", AnyOf: []policy.Requirement{{Scopes: []string{"admin"}}}}
	for _, tc := range []struct {
		name  string
		tok   string
		route policy.Route
	}{
		{"two sub claims (the last one won)", signed(t, p, claims(`"sub":"alice","sub":"admin","scope":"orders:read"`), nil), protectedRoute},
		{"two scope claims", signed(t, p, claims(`"sub":"alice","scope":"orders:read","scope":"admin"`), nil), admin},
		{"a duplicate header parameter", "", protectedRoute},
		{"an unknown critical header", signed(t, p, claims(`"sub":"alice","scope":"orders:read"`), map[string]any{"crit": []string{"x-policy"}, "x-policy": "1"}), protectedRoute},
		{"a scope array element with a space", signed(t, p, claims(`"sub":"alice","scp":["orders:read admin"]`), nil), admin},
		{"a control character in sub", signed(t, p, claims(`"sub":"alice\nX-Admin: 1","scope":"orders:read"`), nil), protectedRoute},
	} {
		tok := tc.tok
		if tok == "" { // a header that repeats "typ": written and signed by hand
			tok = signedRawHeader(t, p, fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"JWT","typ":"at+jwt"}`, p.key.Algorithm(), p.key.KeyID()), claims(`"sub":"alice","scope":"orders:read"`))
		}
		r := check(t, c, bearerReq(t, tc.route, tok))
		if got := httpStatus(r); got != 401 || !strings.Contains(deniedHeader(r, "www-authenticate"), "invalid_token") {
			t.Errorf("%s: %d %q, want 401 invalid_token", tc.name, got, deniedHeader(r, "www-authenticate"))
		}
	}
}

// signedRawHeader signs payload under a protected header written by hand (RS256), for
// shapes the jws package would not produce.
func signedRawHeader(t *testing.T, p *testIdP, header, payload string) string {
	t.Helper()
	var key rsa.PrivateKey
	if err := jwk.Export(p.key.Private(), &key); err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, &key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
