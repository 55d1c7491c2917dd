package envoy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// authzChecks is how many Checks the authz replicas answered for a route.
func (s *gateway) authzChecks(route string) float64 {
	s.t.Helper()
	n := 0.0
	for _, p := range s.Authz {
		for k, v := range testutil.Metrics(s.t, "http://"+p.HTTP+"/metrics") {
			if strings.HasPrefix(k, "specgate_authz_checks_total{") && strings.Contains(k, `route="`+route+`"`) {
				n += v
			}
		}
	}
	return n
}

// testPlugin: on a route the plugin decides (POST /shop/orders: a token route without rate
// limits or API keys), allows never reach authz and edit the headers as authz does; every
// denial is authz's; a revocation reaches the plugin within a second; with authz down the
// plugin allows for at most staleAfter, then every request fails closed.
func testPlugin(t *testing.T, s *gateway) {
	const route = "shop.createOrder"
	wendy := s.Token("wendy", "orders:write")
	forged := map[string]string{"X-User-Id": "mallory", "X-Client-Id": "evil", "X-Evil": "1"}
	testutil.Eventually(t, 10*time.Second, "the plugin deciding on its own", func() bool {
		before := s.authzChecks(route)
		return s.do("POST", "/shop/orders", wendy, forged).StatusCode == 200 && s.authzChecks(route) == before
	})

	t.Run("allows without authz, headers as authz edits them", func(t *testing.T) {
		before := s.authzChecks(route)
		for i := range 20 {
			if code := s.do("POST", "/shop/orders", wendy, forged).StatusCode; code != 200 {
				t.Fatalf("request %d: %d", i+1, code)
			}
			got := s.backend.Last().Header
			if v := got.Values("X-User-Id"); len(v) != 1 || v[0] != "wendy" {
				t.Errorf("request %d: X-User-Id at the backend %q, want [wendy]", i+1, v)
			}
			for _, h := range []string{"X-Client-Id", "X-Evil", "Authorization"} {
				if v := got.Values(h); len(v) != 0 {
					t.Errorf("request %d: %s reached the backend: %q", i+1, h, v)
				}
			}
		}
		if n := s.authzChecks(route) - before; n != 0 {
			t.Errorf("authz answered %v of 20 requests the plugin can decide", n)
		}
	})

	t.Run("denials are authz's", func(t *testing.T) {
		before := s.authzChecks(route)
		resp := s.do("POST", "/shop/orders", s.Token("rita", "orders:read"), nil)
		if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("insufficient scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if code := s.do("POST", "/shop/orders", "not.a.jwt", nil).StatusCode; code != 401 {
			t.Errorf("bad token: %d, want 401", code)
		}
		if n := s.authzChecks(route) - before; n != 2 {
			t.Errorf("authz answered %v of the 2 denials", n)
		}
	})

	t.Run("a revocation reaches the plugin within 1s", func(t *testing.T) {
		tok := s.Token("victor", "orders:write")
		if code := s.do("POST", "/shop/orders", tok, nil).StatusCode; code != 200 {
			t.Fatalf("before revocation: %d", code)
		}
		s.revoke(0, map[string]string{"token": tok})
		// Each Envoy worker has its own plugin VM and feed; connections spread over the four
		// workers: forty 401s in a row, on new connections, come from all.
		fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		status := func() int {
			req, _ := http.NewRequest("POST", s.Public+"/shop/orders", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := fresh.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		start, refused := time.Now(), 0
		for refused < 40 {
			if status() == 401 {
				refused++
			} else {
				refused = 0
			}
			if time.Since(start) > time.Second {
				t.Fatal("revoked token still allowed after 1s")
			}
		}
		t.Logf("revocation in force after %s", time.Since(start))
	})

	t.Run("a subject revocation: older tokens refused, a newer one is authz's to allow", func(t *testing.T) {
		old := s.Token("sam", "orders:write")
		s.revoke(1, map[string]string{"sub": "sam"})
		testutil.Eventually(t, time.Second, "sam's token refused", func() bool {
			return s.do("POST", "/shop/orders", old, nil).StatusCode == 401
		})
		// iat is in whole seconds: a token of the next second is newer than the revocation.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
		newer := s.Token("sam", "orders:write")
		before := s.authzChecks(route)
		for range 3 {
			if code := s.do("POST", "/shop/orders", newer, nil).StatusCode; code != 200 {
				t.Fatalf("a token issued after the revocation: %d, want 200", code)
			}
		}
		// The plugin's filter holds sub:sam: it cannot tell a newer token, so authz decides.
		if n := s.authzChecks(route) - before; n != 3 {
			t.Errorf("authz answered %v of 3 requests of a revoked subject's newer token, want 3", n)
		}
	})

	t.Run("authz down: allows for at most staleAfter, then fails closed", func(t *testing.T) {
		for _, p := range s.Authz {
			p.Kill()
		}
		down := time.Now()
		stale := s.Config.Authz.Plugin.StaleAfter.Duration
		for {
			code := s.do("POST", "/shop/orders", wendy, nil).StatusCode
			since := time.Since(down)
			if code == 503 {
				t.Logf("503 after %s (staleAfter %s)", since, stale)
				break
			}
			if code != 200 {
				t.Fatalf("after %s: %d, want 200 then 503", since, code)
			}
			if since > stale+500*time.Millisecond {
				t.Fatalf("still allowed %s after authz stopped (staleAfter %s)", since, stale)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, p := range s.Authz {
			p.Start()
		}
	})
}
