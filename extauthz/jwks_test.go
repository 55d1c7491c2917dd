package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	p.down.Store(true)
	s, c := startServer(t, deps{cfg: testConfig(p), refreshCooldown: 100 * time.Millisecond})
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	// check fails the test on a gRPC error: the answer must be a CheckResponse.
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 401 {
		t.Fatalf("status %d, want 401 while the JWKS is down", got)
	}
	p.down.Store(false)
	testutil.Eventually(t, 5*time.Second, "token accepted once the JWKS is back", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 200
	})
	if reasons(t, s)["deny/"+verify.ReasonUnknownKey] < 1 {
		t.Errorf("reasons %v", reasons(t, s))
	}
}

func TestJWKSDownDuringRun(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p), refreshCooldown: time.Millisecond})
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "a", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("status %d", got)
	}
	p.down.Store(true)
	// Force refreshes against the dead endpoint (unknown kids) ...
	stranger, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, stranger, "x", []string{"orders:read"}, nil)))); got != 401 {
			t.Fatalf("unknown key: %d", got)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// ... and new tokens (not in the token cache) signed by the known key still pass.
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "b", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("cached keys stopped working while the JWKS is down: %d", got)
	}
}

func TestKeyRotationAndRefreshCooldown(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p), refreshCooldown: time.Hour})
	testutil.Eventually(t, 5*time.Second, "first fetch", func() bool { return p.fetches.Load() >= 1 })
	next, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	p.setKeys(p.key, next) // the IdP rotates in a new key
	before := p.fetches.Load()
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, next, "a", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("rotated key: %d", got)
	}
	if n := p.fetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches for an unknown kid, want 1", n)
	}
	// A flood of forged kids within the cooldown costs the IdP nothing.
	forged, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	before = p.fetches.Load()
	for range 20 {
		if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, forged, "a", []string{"orders:read"}, nil)))); got != 401 {
			t.Fatalf("forged kid: %d", got)
		}
	}
	if n := p.fetches.Load() - before; n != 0 {
		t.Fatalf("%d fetches during the cooldown", n)
	}
}

// discovering is gateway.yaml trusting an issuer found through OIDC discovery (no jwksUri):
// the discovery server's URL with a slash, whose document names named(URL) as its issuer and
// serves k's JWKS.
func discovering(t *testing.T, k *devissuer.Key, named func(url string) string) (string, config.Gateway) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": named(srv.URL), "jwks_uri": srv.URL + "/keys"})
	})
	mux.Handle("/keys", devissuer.JWKS(k))
	iss := srv.URL + "/"
	cfg := config.Default()
	cfg.Issuers = []config.Issuer{{Issuer: iss, Audiences: []string{testAud}}}
	cfg.Revocation.ExpectedEntries = 1000
	return iss, cfg
}

func TestOIDCDiscovery(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	iss, cfg := discovering(t, k, func(url string) string { return url + "/" })
	_, c := startServer(t, deps{cfg: cfg, refreshCooldown: 50 * time.Millisecond})
	tok, err := devissuer.Mint(k, iss, testAud, "alice", []string{"orders:read"}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "token accepted through discovery", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 200
	})
}

// An issuer whose discovery document names itself otherwise (here without the trailing slash
// gateway.yaml has) is refused, and the log says both values.
func TestOIDCDiscoveryIssuerMismatchNamesBoth(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	iss, cfg := discovering(t, k, func(url string) string { return url })
	var logs testenvoy.LogBuffer
	_, c := startServer(t, deps{cfg: cfg, refreshCooldown: 50 * time.Millisecond, log: slog.New(slog.NewJSONHandler(&logs, nil))})
	tok, err := devissuer.Mint(k, iss, testAud, "alice", []string{"orders:read"}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`the document names issuer \"%s\", gateway.yaml trusts \"%s\"`, strings.TrimSuffix(iss, "/"), iss)
	testutil.Eventually(t, 5*time.Second, "the mismatch logged with both issuers", func() bool {
		if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 401 {
			t.Fatalf("token of a mismatched issuer: %d, want 401", got)
		}
		return strings.Contains(logs.String(), want)
	})
}

// A JWKS whose Cache-Control max-age is above the refresh floor is fetched as often as it
// says, not at the floor: a removed key keeps verifying until max-age ends, then stops.
func TestJWKSMaxAgeHonoured(t *testing.T) {
	t.Parallel()
	old, next := rsaKey(t), mustKey(t, "ES256")
	p := newIdP(t, old, next)
	both := maxAgeJWKS(2, old, next)
	p.jwks.Store(&both)
	start := time.Now()
	_, c := startServer(t, deps{cfg: testConfig(p), jwksMinInterval: 300 * time.Millisecond})
	tok := mint(t, old, "a", []string{"orders:read"}, nil)
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 200 {
		t.Fatalf("before the removal: %d", got)
	}
	// On a busy machine the start can fetch twice in a row: let those land before the removal,
	// so that the first fetch after it is the refresh max-age asked for.
	testutil.Eventually(t, 2*time.Second, "the start's fetches done", func() bool {
		f := p.fetchedSince(start)
		return len(f) > 0 && time.Since(f[len(f)-1]) > 150*time.Millisecond
	})
	onlyNext := maxAgeJWKS(2, next)
	p.jwks.Store(&onlyNext)
	removed := time.Now()
	testutil.Eventually(t, 5*time.Second, "the removed key refused once max-age ended", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 401
	})
	// The refresh that saw the removal, against the last fetch before it.
	var before, after time.Time
	for _, f := range p.fetchedSince(start) {
		if f.Before(removed) {
			before = f
		} else if after.IsZero() {
			after = f
		}
	}
	if before.IsZero() || after.IsZero() {
		t.Fatalf("JWKS fetches %v: want one before the removal and a refresh after it", p.fetchedSince(start))
	}
	gap := after.Sub(before)
	t.Logf("refreshed %s after the previous fetch (max-age 2s, floor 300ms)", gap.Round(time.Millisecond))
	if gap < 1900*time.Millisecond {
		t.Errorf("refreshed %s after the previous fetch: max-age=2 not honoured (the floor is 300ms)", gap)
	}
}

// A token with a kid authz has not seen makes it refresh the issuer's JWKS; when the IdP is
// slow, the Check answers (401 unknown_key) within half of Envoy's timeout for authz instead
// of outliving it, and the refresh goes on: once the keys arrive the token passes.
func TestUnknownKeyAnswersBeforeEnvoysTimeout(t *testing.T) {
	t.Parallel()
	old := rsaKey(t)
	p := newIdP(t, old)
	cfg := testConfig(p)
	cfg.Authz.Timeout = config.Duration{Duration: 200 * time.Millisecond}
	_, c := startServer(t, deps{cfg: cfg, refreshCooldown: time.Millisecond})
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, old, "alice", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("before the rotation: %d", got)
	}
	rotated, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	slow := devissuer.JWKS(old, rotated)
	var delayed http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		slow.ServeHTTP(w, r)
	})
	p.jwks.Store(&delayed)
	tok := mint(t, rotated, "alice", []string{"orders:read"}, nil)
	start := time.Now()
	got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok)))
	if took := time.Since(start); got != 401 || took > 150*time.Millisecond {
		t.Errorf("unknown kid while the JWKS is slow: %d after %s, want 401 within 150ms", got, took.Round(time.Millisecond))
	}
	testutil.Eventually(t, 5*time.Second, "the rotated key learnt", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 200
	})
}

// An attacker sending a token with a made-up kid every 100ms cannot keep a real new key out:
// once the IdP publishes it, tokens signed with it pass within the forced-refresh cooldown
// (1s, the default) plus one fetch, and the IdP sees at most one forced fetch per cooldown.
func TestRotationNotStalledByForgedKids(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p)}) // the default cooldown
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "a", []string{"orders:read"}, nil)))); got != 200 {
		t.Fatalf("before the rotation: %d", got)
	}
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flooded <- n
				return
			case <-time.After(100 * time.Millisecond):
			}
			forged, err := devissuer.Generate("ES256") // a new kid each time
			if err != nil {
				t.Error(err)
				continue
			}
			tok, err := devissuer.Mint(forged, testIss, testAud, "x", []string{"orders:read"}, time.Hour, nil)
			if err != nil {
				t.Error(err)
				continue
			}
			r, err := c.Check(context.Background(), bearerReq(t, protectedRoute, tok))
			if err != nil || httpStatus(r) != 401 {
				t.Errorf("forged kid: %v %v", httpStatus(r), err)
			}
			n++
		}
	}()
	start := time.Now()
	time.Sleep(1500 * time.Millisecond) // the flood is on: every cooldown is spent on forged kids
	next, err := devissuer.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, next, "a", []string{"orders:read"}, nil)
	p.setKeys(p.key, next)
	rotated := time.Now()
	took := testutil.Eventually(t, 3*time.Second, "the new key accepted", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 200
	})
	time.Sleep(time.Second)
	close(stop)
	forged := <-flooded
	fetches := p.fetchedSince(start)
	t.Logf("new key accepted %s after it appeared; %d forged kids and %d JWKS fetches in %s", took.Round(time.Millisecond),
		forged, len(fetches), time.Since(start).Round(time.Millisecond))
	// The IdP sees at most one fetch a second: no two closer than the cooldown, less the
	// jitter between setting off a fetch and its arrival (up to some 100 ms each on a loaded
	// 2-core runner under -race). Without the cooldown they would come every 100 ms.
	for i := 1; i < len(fetches); i++ {
		if gap := fetches[i].Sub(fetches[i-1]); gap < time.Second-200*time.Millisecond {
			t.Errorf("JWKS fetches %d and %d arrived %s apart, want at least 1s", i-1, i, gap.Round(time.Millisecond))
		}
	}
	// The new key is fetched within a second of appearing (plus the same jitter), and accepted
	// as soon as that fetch is done: within 1s plus the fetch (a few ms here; slack for -race
	// on 2 cores).
	first := slices.IndexFunc(fetches, func(at time.Time) bool { return at.After(rotated) })
	if first < 0 {
		t.Fatal("no JWKS fetch after the rotation")
	}
	if wait := fetches[first].Sub(rotated); wait > time.Second+200*time.Millisecond {
		t.Errorf("the first fetch after the rotation came %s after it, want within the 1s cooldown", wait.Round(time.Millisecond))
	}
	if took > time.Second+400*time.Millisecond {
		t.Errorf("the new key took %s to be accepted (since %s), want within 1s and one fetch", took, rotated.Format(time.StampMilli))
	}
}

// A flood of made-up kids cannot hold Checks open: at most maxWaiting of them wait for the
// scheduled fetch, the others answer at once with the keys held.
func TestForcedFetchWaitersBounded(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Authz.Timeout = config.Duration{Duration: 4 * time.Second} // each waits up to 1s
	s, _ := startServer(t, deps{cfg: cfg, refreshCooldown: time.Hour})
	ik := s.verifier.IssuerKeys(testIss)
	ik.ForceRefresh(context.Background()) // the first forced fetch, at once; the next is an hour away
	const callers = 100
	took := make(chan time.Duration, callers)
	for range callers {
		go func() {
			start := time.Now()
			ik.ForceRefresh(context.Background())
			took <- time.Since(start)
		}()
	}
	var waited, quick int
	for range callers {
		if d := <-took; d >= 500*time.Millisecond {
			waited++
		} else if d < 200*time.Millisecond {
			quick++
		}
	}
	if waited > maxWaiting || quick < callers-maxWaiting {
		t.Errorf("%d callers waited for the fetch and %d answered at once, want at most %d and at least %d",
			waited, quick, maxWaiting, callers-maxWaiting)
	}
}

// A key removed from the JWKS stops verifying at the next periodic refresh, cached tokens
// included: with Cache-Control: no-cache (Keycloak's), after the floor of the refresh
// interval.
func TestRemovedKeyStopsVerifying(t *testing.T) {
	t.Parallel()
	old, next := rsaKey(t), mustKey(t, "ES256")
	p := newIdP(t, old, next)
	both := noCacheJWKS(old, next)
	p.jwks.Store(&both)
	_, c := startServer(t, deps{cfg: testConfig(p), jwksMinInterval: 300 * time.Millisecond})
	tok := mint(t, old, "a", []string{"orders:read"}, nil)
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 200 {
		t.Fatalf("before the removal: %d", got)
	}
	onlyNext := noCacheJWKS(next)
	p.jwks.Store(&onlyNext)
	took := testutil.Eventually(t, 3*time.Second, "the cached token of a removed key refused", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 401
	})
	t.Logf("refused %s after the key left the JWKS (refresh floor 300ms)", took.Round(time.Millisecond))
	if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, mint(t, next, "b", []string{"orders:read"}, nil)))); got != 200 {
		t.Errorf("the remaining key: %d", got)
	}
}

// noCacheJWKS serves the keys' JWKS as Keycloak does, with Cache-Control: no-cache.
func noCacheJWKS(keys ...*devissuer.Key) http.Handler {
	rec := httptest.NewRecorder()
	devissuer.JWKS(keys...).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks.json", nil))
	body := rec.Body.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

// maxAgeJWKS serves the keys' JWKS with Cache-Control: max-age=seconds.
func maxAgeJWKS(seconds int, keys ...*devissuer.Key) http.Handler {
	rec := httptest.NewRecorder()
	devissuer.JWKS(keys...).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks.json", nil))
	body := rec.Body.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d", seconds))
		_, _ = w.Write(body)
	})
}

func mustKey(t *testing.T, alg string) *devissuer.Key {
	t.Helper()
	k, err := devissuer.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
