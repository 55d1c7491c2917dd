package devissuer

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

func TestLoadOrCreateAndMint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dev-key.pem")
	k1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreate(path)
	if err != nil || k2.KeyID() != k1.KeyID() || k1.KeyID() == "" {
		t.Fatalf("reload gave kid %q, want %q (%v)", k2.KeyID(), k1.KeyID(), err)
	}
	tok, err := Mint(k1, Issuer, Audience, "alice", []string{"a", "b"}, time.Minute, map[string]any{"client_id": "c", "jti": nil})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseString(tok, jwt.WithKey(k2.Algorithm(), k2.Public()), jwt.WithIssuer(Issuer), jwt.WithAudience(Audience))
	if err != nil {
		t.Fatal(err)
	}
	var scope, cid string
	_ = parsed.Get("scope", &scope)
	_ = parsed.Get("client_id", &cid)
	if _, ok := parsed.JwtID(); ok || scope != "a b" || cid != "c" {
		t.Fatalf("claims: scope %q client_id %q", scope, cid)
	}
	if isPriv, _ := jwkIsPrivate(k1); isPriv {
		t.Fatal("public JWK carries private material")
	}
}

func jwkIsPrivate(k *Key) (bool, error) { return jwkIsPrivateKey(k.Public()) }

var jwkIsPrivateKey = jwk.IsPrivateKey
