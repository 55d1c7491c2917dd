package extauthz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/policy"
)

func revokeKey(set *revocation.Set, key string, at time.Time) {
	set.Add(revocation.Entry{Key: key, At: at, Expires: at.Add(24 * time.Hour)}, time.Now())
}

// Until the revocation set has loaded, a valid token gets 503 (it might be revoked), a bad one
// still gets 401, and a request without a token on an anonymous route passes.
func TestBeforeRevocationsLoad(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	set := revocation.NewSet(1000, 1e-7) // never filled from a store: not loaded
	_, c := startServer(t, deps{cfg: testConfig(p), revoked: set})
	good := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	expired, err := devissuer.Mint(p.key, testIss, testAud, "alice", []string{"orders:read"}, -time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := devissuer.Generate("RS256") // a key the issuer never published
	if err != nil {
		t.Fatal(err)
	}
	forged := mint(t, other, "alice", []string{"orders:read"}, nil)
	anonymous := policy.Route{ID: "catalog.list", Anonymous: true}
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want int
	}{
		{"valid token", bearerReq(t, protectedRoute, good), 503},
		{"expired token", bearerReq(t, protectedRoute, expired), 401},
		{"forged token", bearerReq(t, protectedRoute, forged), 401},
		{"garbage", bearerReq(t, protectedRoute, "not.a.jwt"), 401},
		{"no token, anonymous route", request(t, anonymous, nil), 200},
	} {
		if got := httpStatus(check(t, c, tc.req)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// The 503 must not have cached anything that skips the check once loaded, nor the reverse.
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, good))); got != 503 {
		t.Errorf("valid token asked again before the load: %d, want 503", got)
	}
	set.Replace(nil, time.Now())
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, good))); got != 200 {
		t.Errorf("valid token after the load: %d, want 200", got)
	}
}

func TestRevokedTokens(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	set := newSet()
	s, c := startServer(t, deps{cfg: testConfig(p), revoked: set})
	ok := func(tok string) int { return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) }
	now := time.Now()

	t.Run("jti, even when cached", func(t *testing.T) {
		tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
		if ok(tok) != 200 {
			t.Fatal("fresh token refused")
		}
		parsed, _ := jwt.ParseInsecure([]byte(tok))
		jti, _ := parsed.JwtID()
		revokeKey(set, revocation.JTIKey(jti), now)
		r := check(t, c, bearerReq(t, protectedRoute, tok))
		if httpStatus(r) != 401 || deniedHeader(r, "www-authenticate") != `Bearer error="invalid_token"` {
			t.Fatalf("revoked jti: %d", httpStatus(r))
		}
		if reasons(t, s)["deny/revoked"] < 1 {
			t.Error("not counted as revoked")
		}
	})
	t.Run("token hash when there is no jti", func(t *testing.T) {
		tok := mint(t, p.key, "carol", []string{"orders:read"}, map[string]any{"jti": nil})
		other := mint(t, p.key, "carol", []string{"orders:read"}, map[string]any{"jti": nil, "nonce": "x"})
		revokeKey(set, revocation.TokenKey(revocation.TokenHash(tok)), now)
		if ok(tok) != 401 || ok(other) != 200 {
			t.Fatal("tok: revocation must hit exactly that token")
		}
	})
	t.Run("subject revoked after issue is refused, newer login accepted", func(t *testing.T) {
		old := mint(t, p.key, "dave", []string{"orders:read"}, map[string]any{"iat": now.Add(-time.Hour).Unix()})
		cut := now.Add(-10 * time.Minute)
		same := mint(t, p.key, "dave", []string{"orders:read"}, map[string]any{"iat": cut.Unix()})
		noIat := mint(t, p.key, "dave", []string{"orders:read"}, map[string]any{"iat": nil})
		newer := mint(t, p.key, "dave", []string{"orders:read"}, map[string]any{"iat": cut.Add(time.Second).Unix()})
		otherSub := mint(t, p.key, "erin", []string{"orders:read"}, map[string]any{"iat": now.Add(-time.Hour).Unix()})
		if ok(old) != 200 {
			t.Fatal("old token refused before the revocation")
		}
		revokeKey(set, revocation.SubjectKey("dave"), cut)
		for name, c := range map[string]struct {
			tok  string
			want int
		}{"issued before": {old, 401}, "issued at the same second": {same, 401}, "without iat": {noIat, 401},
			"issued after": {newer, 200}, "other subject": {otherSub, 200}} {
			if got := ok(c.tok); got != c.want {
				t.Errorf("%s: %d, want %d", name, got, c.want)
			}
		}
	})
}

// TestRevocationUnderConcurrency: 64 goroutines check revoked tokens while revocations
// keep being added (and the filter folds copies); not one revoked token may pass.
func TestRevocationUnderConcurrency(t *testing.T) {
	t.Parallel()
	set := revocation.NewSet(100_000, 1e-7)
	now := time.Now()
	var revoked []string
	for i := range 2000 {
		k := fmt.Sprintf("jti-%d", i)
		revokeKey(set, revocation.JTIKey(k), now)
		revoked = append(revoked, k)
	}
	var misses, falseHits atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	added := make(chan string, 4096)
	wg.Add(1)
	go func() { // writer: new revocations, enough to fold several times
		defer wg.Done()
		defer close(added)
		for i := 0; ctx.Err() == nil && i < 5000; i++ {
			k := fmt.Sprintf("new-%d", i)
			revokeKey(set, revocation.JTIKey(k), now)
			select {
			case added <- k:
			default:
			}
		}
	}()
	var sum [32]byte
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i++ {
				if !set.Revoked(revoked[i%len(revoked)], "", &sum, &sum, now) {
					misses.Add(1)
				}
				if set.Revoked(fmt.Sprintf("valid-%d", i), "", &sum, &sum, now) {
					falseHits.Add(1)
				}
				select {
				case k, ok := <-added:
					if ok && !set.Revoked(k, "", &sum, &sum, now) {
						misses.Add(1)
					}
				default:
				}
			}
		}()
	}
	wg.Wait()
	if misses.Load() != 0 || falseHits.Load() != 0 {
		t.Fatalf("%d revoked tokens passed, %d valid tokens refused", misses.Load(), falseHits.Load())
	}
}

// Before the revocation list has loaded once (Redis down at start), a token cannot be
// checked against it: refused with 503, never let through; anonymous calls without a token
// still pass.
func TestTokensRefusedUntilRevocationsLoad(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	set := revocation.NewSet(10_000, 1e-7) // never loaded
	_, c := startServer(t, deps{cfg: testConfig(p), revoked: set})
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 503 {
		t.Fatalf("token before the list loaded: %d, want 503", got)
	}
	anon := policy.Route{ID: "shop.public", Anonymous: true}
	if got := httpStatus(check(t, c, request(t, anon, nil))); got != 200 {
		t.Fatalf("anonymous call without token: %d", got)
	}
	set.Replace(nil, time.Now())
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 200 {
		t.Fatalf("after the list loaded: %d", got)
	}
}

// A token revoked by value (no jti) stays revoked however its signature is spelled: ECDSA's
// (r, n−s) verifies like (r, s), and PS256 signs the same header.payload anew each time. The
// revocation goes through the admin API, as `specgate revoke --jwt` sends it.
func TestRevocationByValueSurvivesResigning(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"ES256", "ES384", "ES512", "PS256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key, err := devissuer.Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			p := newIdP(t, key)
			cfg := testConfig(p)
			cfg.Issuers[0].Algorithms = []string{alg}
			r := startReplica(t, cfg, "")
			tok := mint(t, key, "mallory", []string{"orders:read"}, map[string]any{"jti": nil})
			respell := respelled(t, key, tok)
			if r.status(t, tok) != 200 || r.status(t, respell) != 200 {
				t.Fatalf("before the revocation: %d and %d, want 200 (the respelled signature must verify)", r.status(t, tok), r.status(t, respell))
			}
			if code, body := r.revoke(t, adminToken, map[string]string{"token": tok}); code != 200 {
				t.Fatalf("revoke: %d %s", code, body)
			}
			if got := r.status(t, tok); got != 401 {
				t.Errorf("revoked token: %d, want 401", got)
			}
			if got := r.status(t, respell); got != 401 {
				t.Errorf("the same token with its signature spelled anew: %d, want 401", got)
			}
			other := mint(t, key, "mallory", []string{"orders:read"}, map[string]any{"jti": nil, "nonce": "other"})
			if got := r.status(t, other); got != 200 {
				t.Errorf("another token of the subject: %d, want 200", got)
			}
		})
	}
}

// respelled returns tok with another valid signature over the same header.payload: for
// ECDSA (r, n−s); for PS256 a fresh signature; RS256 has one spelling only.
func respelled(t *testing.T, key *devissuer.Key, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	content, sig := tok[:i], tok[i+1:]
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	var priv any
	if err := jwk.Export(key.Private(), &priv); err != nil {
		t.Fatal(err)
	}
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		n := k.Curve.Params().N
		size := len(raw) / 2
		s := new(big.Int).SetBytes(raw[size:])
		s.Sub(n, s)
		copy(raw[size:], s.FillBytes(make([]byte, size)))
	case *rsa.PrivateKey:
		if key.Algorithm().String() != "PS256" {
			return tok
		}
		h := sha256.Sum256([]byte(content))
		if raw, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			t.Fatal(err)
		}
	}
	out := content + "." + base64.RawURLEncoding.EncodeToString(raw)
	if out == tok && key.Algorithm().String() != "RS256" {
		t.Fatal("the signature was not respelled")
	}
	return out
}
