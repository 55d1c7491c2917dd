// Package devissuer is the local token issuer of `make run` and of the tests: a signing key
// kept in a PEM file, a JWKS handler for its public half, and Mint for tokens.
package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Defaults used by `make run` and `specgate token`.
const (
	Issuer   = "http://127.0.0.1:9002/"
	Audience = "api"
	JWKSPath = "/.well-known/jwks.json"
)

// Key is a signing key with its key id and algorithm.
type Key struct {
	priv jwk.Key
	pub  jwk.Key
	alg  jwa.SignatureAlgorithm
}

// KeyID is the RFC 7638 thumbprint of the public key.
func (k *Key) KeyID() string { id, _ := k.pub.KeyID(); return id }

// Algorithm is RS256, ES256 or EdDSA.
func (k *Key) Algorithm() jwa.SignatureAlgorithm { return k.alg }

// Private is the private JWK (with kid), for tests that sign their own tokens.
func (k *Key) Private() jwk.Key { return k.priv }

// Public is the public JWK (with kid and alg).
func (k *Key) Public() jwk.Key { return k.pub }

// Generate makes a fresh in-memory key: alg is RS256, PS256, ES256, ES384, ES512 or EdDSA.
func Generate(alg string) (*Key, error) {
	var raw crypto.Signer
	var err error
	switch alg {
	case "RS256", "PS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		raw, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("devissuer: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	if alg == "PS256" {
		return withAlg(raw, jwa.PS256())
	}
	return fromRaw(raw)
}

func fromRaw(raw crypto.Signer) (*Key, error) {
	var alg jwa.SignatureAlgorithm
	switch r := raw.(type) {
	case *rsa.PrivateKey:
		alg = jwa.RS256()
	case *ecdsa.PrivateKey:
		switch r.Curve {
		case elliptic.P256():
			alg = jwa.ES256()
		case elliptic.P384():
			alg = jwa.ES384()
		case elliptic.P521():
			alg = jwa.ES512()
		default:
			return nil, errors.New("devissuer: EC keys must be P-256, P-384 or P-521")
		}
	case ed25519.PrivateKey:
		alg = jwa.EdDSA()
	default:
		return nil, fmt.Errorf("devissuer: unsupported key type %T", raw)
	}
	return withAlg(raw, alg)
}

// withAlg wraps raw as a signing key for alg, with a key id.
func withAlg(raw crypto.Signer, alg jwa.SignatureAlgorithm) (*Key, error) {
	priv, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, err
	}
	if err := jwk.AssignKeyID(pub); err != nil {
		return nil, err
	}
	kid, _ := pub.KeyID()
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, err
		}
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, err
		}
	}
	if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, err
	}
	return &Key{priv: priv, pub: pub, alg: alg}, nil
}

// LoadOrCreate reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC) from path, or
// creates an RSA-2048 key there (mode 0600) when the file does not exist.
func LoadOrCreate(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("devissuer: %s: no PEM block", path)
	}
	var raw any
	switch blk.Type {
	case "RSA PRIVATE KEY":
		raw, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		raw, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		raw, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: %s: %w", path, err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devissuer: %s: not a signing key", path)
	}
	return fromRaw(signer)
}

func create(path string) (*Key, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	// O_EXCL: two processes racing to create the key must not overwrite each other's.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreate(path)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return fromRaw(raw)
}

// Mint signs a token for sub with the given scopes (the space-separated `scope` claim),
// valid for ttl, with a random jti and iat=now. extra adds or overrides claims; a nil value
// removes one (tests use that to drop exp, jti or iat).
func Mint(key *Key, issuer, audience, sub string, scopes []string, ttl time.Duration, extra map[string]any) (string, error) {
	now := time.Now()
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	claims := map[string]any{
		jwt.IssuerKey:     issuer,
		jwt.AudienceKey:   audience,
		jwt.IssuedAtKey:   now.Unix(),
		jwt.ExpirationKey: now.Add(ttl).Unix(),
		jwt.JwtIDKey:      hex.EncodeToString(id[:]),
	}
	if sub != "" {
		claims[jwt.SubjectKey] = sub
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok := jwt.New()
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			return "", fmt.Errorf("devissuer: claim %s: %w", k, err)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(key.alg, key.priv))
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return string(b), nil
}

// JWKS serves the public keys as a JSON Web Key Set.
func JWKS(keys ...*Key) http.Handler {
	set := jwk.NewSet()
	for _, k := range keys {
		_ = set.AddKey(k.pub)
	}
	body, err := json.Marshal(set)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			http.Error(w, "jwks unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}
