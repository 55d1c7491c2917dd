package envoy_test

import (
	"testing"
	"time"

	"github.com/specgate/specgate/config"
)

// An access_token query parameter (RFC 6750 §2.3) never reaches a backend whose operation does
// not declare it: a backend that also reads it would act on a token the gateway never checked
// (revoked, expired, another audience). Envoy sends such requests to authz, even on anonymous
// routes, in any spelling a framework would decode, and authz answers 400 invalid_request;
// an operation that declares the parameter gets it. The same with authz asked for every
// request and with the edge decision cache, which must not replay an allow for them.
func TestQueryTokenRefusedUnlessDeclared(t *testing.T) {
	for name, configure := range map[string]func(*config.Gateway){
		"tokenless routes": nil,
		"authz asked":      func(c *config.Gateway) { c.Authz.CheckTokenless = true },
		"edge cache":       func(c *config.Gateway) { c.Authz.DecisionCacheTTL = config.Duration{Duration: 5 * time.Second} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newGateway(t, configure)
			alice := s.Token("alice", "orders:read")
			// Warm the edge cache with alice's allow on the protected route.
			for range 2 {
				if c := s.get("/shop/orders", alice, nil).StatusCode; c != 200 {
					t.Fatalf("alice on /shop/orders: %d", c)
				}
			}
			for _, tc := range []struct {
				path, token string
				want        int
			}{
				{"/shop/public?page=1", "", 200},
				{"/shop/public?access_token=stolen", "", 400},
				{"/shop/public?page=1&ACCESS_TOKEN=stolen", "", 400},
				{"/shop/public?access%5Ftoken=stolen", "", 400},
				{"/shop/public?x=1;access_token=stolen", "", 400},
				{"/shop/public?my_access_token=1", "", 200}, // another parameter: authz lets it through
				{"/shop/orders?access_token=stolen", alice, 400},
				{"/shop/orders?page=2", alice, 200},
				{"/shop/feed?access_token=declared", "", 200},
			} {
				hits := s.backend.Hits()
				resp := s.get(tc.path, tc.token, nil)
				if resp.StatusCode != tc.want {
					t.Errorf("GET %s (token %v): %d, want %d", tc.path, tc.token != "", resp.StatusCode, tc.want)
				}
				reached := s.backend.Hits() > hits
				if reached != (tc.want == 200) {
					t.Errorf("GET %s: reached the backend %v", tc.path, reached)
				}
				if tc.want == 400 && resp.Header.Get("Www-Authenticate") != `Bearer error="invalid_request"` {
					t.Errorf("GET %s: WWW-Authenticate %q", tc.path, resp.Header.Get("Www-Authenticate"))
				}
			}
			if got := s.backend.Last().URL.Query().Get("access_token"); got != "declared" {
				t.Errorf("the declaring operation's backend got access_token %q", got)
			}
		})
	}
}
