package envoy_test

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// exchange is what one request came to: the client's answer and what the backend received.
type exchange struct {
	Status  int
	Body    string
	Header  http.Header // the client's, less what differs between any two requests
	Backend http.Header // nil when the request did not reach the backend
}

// aliceToken stands for a token of this stack's issuer (each stack has its own key) for
// alice, without client_id: its rate-limit client is the address. wendyToken, for wendy
// with orders:write, is one the authz plugin decides on POST /shop/orders.
const (
	aliceToken = "Bearer {alice}"
	wendyToken = "Bearer {wendy}"
)

// exchange makes one request and records what it came to. A body of "chunked:<text>" is sent
// without a length (Transfer-Encoding: chunked).
func (s *gateway) exchange(method, path string, hdr http.Header, body string) exchange {
	s.t.Helper()
	var r io.Reader
	if text, ok := strings.CutPrefix(body, "chunked:"); ok {
		r = io.MultiReader(strings.NewReader(text)) // hides the length from the client
	} else if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.Public+path, r)
	req.Header = hdr.Clone()
	switch req.Header.Get("Authorization") {
	case aliceToken:
		req.Header.Set("Authorization", "Bearer "+s.Token("alice", "orders:read"))
	case wendyToken:
		req.Header.Set("Authorization", "Bearer "+s.Token("wendy", "orders:write"))
	}
	hits := s.backend.Hits()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	x := exchange{Status: resp.StatusCode, Body: string(answer), Header: resp.Header}
	// Per request: the date, the backend's time, seconds to the window's end.
	for _, h := range []string{"Date", "X-Envoy-Upstream-Service-Time", "X-Ratelimit-Reset"} {
		x.Header.Del(h)
	}
	if s.backend.Hits() > hits {
		x.Backend = s.backend.Last().Header.Clone()
		x.Backend.Del("X-Request-Id") // Envoy's, new per request
	}
	return x
}

// Tokenless routes must be invisible: the same requests through a gateway that asks authz
// for every request and through one whose Envoy serves tokenless anonymous requests alone
// give the clients the same answers and the backends the same headers, header by header:
// identity headers removed, the allow-list applied, rate limits counted in the same buckets
// (a tokenless request and a token without a client id share the client's address bucket,
// behind a trusted load balancer too). And authz is not asked for them. A third gateway runs
// the authz plugin, which decides some token requests in Envoy: the same again.
func TestTokenlessRoutesChangeNothing(t *testing.T) {
	behindLB := func(g *config.Gateway) { g.XFFTrustedHops = 1 }
	asked := newGateway(t, func(g *config.Gateway) { behindLB(g); g.Authz.CheckTokenless = true })
	alone := newGateway(t, behindLB)
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	plugin := newGatewayWith(t, stack.Options{Configure: behindLB, Plugin: testutil.Plugin(t)})
	// The plugin decides once its feed has answered: until then every request goes to authz.
	testutil.Eventually(t, 10*time.Second, "the plugin deciding", func() bool {
		before := plugin.authzChecks("shop.createOrder")
		return plugin.exchange("POST", "/shop/orders", with(nil, "Authorization", wendyToken), "").Status == 200 &&
			plugin.authzChecks("shop.createOrder") == before
	})

	forged := http.Header{"X-User-Id": {"mallory"}, "X-Client-Id": {"evil"}, "X-Token-Issuer": {"https://evil/"},
		"X-Specgate-Client": {"ip:1.2.3.4"}, "X-Evil": {"1"}, "Accept-Language": {"fr"},
		"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	lb := func(addr string, kv ...string) http.Header {
		return with(nil, append([]string{"X-Forwarded-For", addr}, kv...)...)
	}
	type step struct {
		name, method, path string
		hdr                http.Header
		body               string
	}
	steps := []step{
		{"anonymous", "GET", "/shop/public", nil, ""},
		{"anonymous, forged identity and foreign headers", "GET", "/shop/public", forged, ""},
		{"anonymous, empty Authorization", "GET", "/shop/public", with(nil, "Authorization", ""), ""},
		{"anonymous, bad token", "GET", "/shop/public", with(forged, "Authorization", "Bearer not.a.jwt"), ""},
		{"anonymous, valid token", "GET", "/shop/public", with(forged, "Authorization", aliceToken), ""},
		{"anonymous, undeclared method", "POST", "/shop/public", nil, ""},
		{"anonymous POST with a body", "POST", "/shop/subscribe", with(forged, "Content-Type", "application/json"), `{"email":"a@b.test"}`},
		{"anonymous POST with a chunked body", "POST", "/shop/subscribe", with(nil, "Content-Type", "application/json"), `chunked:{"email":"c@d.test"}`},
		{"protected, no token", "GET", "/shop/orders", forged, ""},
		{"token route the plugin decides", "POST", "/shop/orders", with(forged, "Authorization", wendyToken, "X-Tenant", "t1"), ""},
		{"token route the plugin decides, scope missing", "POST", "/shop/orders", with(forged, "Authorization", aliceToken), ""},
		{"declared query token", "GET", "/shop/feed?access_token=abc", with(forged, "Authorization", wendyToken), ""},
		{"per-route allow-list", "GET", "/shop/catalog/1", with(forged, "X-Cart", "c1", "If-None-Match", `"e1"`, "X-Tenant", "t1"), ""},
		{"ip key", "GET", "/shop/by-ip", forged, ""},
		{"route key", "GET", "/shop/by-route", nil, ""},
		{"header key stays with authz", "GET", "/shop/search", with(forged, "X-Session", "s1"), ""},
		{"header key, missing header", "GET", "/shop/search", nil, ""},
	}
	// client key: 4 a minute per client. Tokenless requests from one address, then a token
	// without client id from it (same bucket: 429), another address (its own bucket), and
	// a client-chosen X-Forwarded-For entry left of the trusted one (not the client).
	for range 3 {
		steps = append(steps, step{"client key, tokenless", "GET", "/shop/catalog/2", lb("203.0.113.7"), ""})
	}
	steps = append(steps,
		step{"client key, token without client id", "GET", "/shop/catalog/3", lb("203.0.113.7", "Authorization", aliceToken), ""},
		step{"client key, tokenless, over the limit", "GET", "/shop/catalog/2", lb("203.0.113.7"), ""},
		step{"client key, token, over the limit", "GET", "/shop/catalog/2", lb("203.0.113.7", "Authorization", aliceToken), ""},
		step{"client key, another address", "GET", "/shop/catalog/2", lb("203.0.113.8"), ""},
		step{"client key, forged entry left of the trusted one", "GET", "/shop/catalog/2", lb("198.51.100.1, 203.0.113.7"), ""},
	)
	for range 4 {
		steps = append(steps, step{"ip key, to its limit", "GET", "/shop/by-ip", nil, ""})
	}

	// Rate-limit windows are calendar minutes: both gateways count in the same one.
	if left := time.Minute - time.Duration(time.Now().Unix()%60)*time.Second; left < 15*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
	authzCalls := func(s *gateway) int {
		return s.stat("http.public.ext_authz.ok") + s.stat("http.public.ext_authz.denied")
	}
	askedBefore, aloneBefore := authzCalls(asked), authzCalls(alone)
	checked, tokenless := 0, 0 // requests that reach an operation's route; those without a token
	for _, st := range steps {
		want, got := asked.exchange(st.method, st.path, st.hdr, st.body), alone.exchange(st.method, st.path, st.hdr, st.body)
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: %s %s\n  authz asked: %+v\n  tokenless:   %+v", st.name, st.method, st.path, want, got)
		}
		if pl := plugin.exchange(st.method, st.path, st.hdr, st.body); !reflect.DeepEqual(want, pl) {
			t.Errorf("%s: %s %s\n  authz asked: %+v\n  plugin:      %+v", st.name, st.method, st.path, want, pl)
		}
		if st.path == "/shop/public" && st.method == "POST" {
			continue // 405 from Envoy: authz is never asked
		}
		checked++
		if _, ok := st.hdr["Authorization"]; !ok && st.path != "/shop/search" && !strings.HasPrefix(st.path, "/shop/orders") {
			tokenless++
		}
	}
	t.Logf("%d requests, %d of them tokenless on anonymous routes", len(steps), tokenless)
	if n := authzCalls(asked) - askedBefore; n != checked {
		t.Errorf("the gateway that asks authz asked it %d times for %d requests", n, checked)
	}
	if n, want := authzCalls(alone)-aloneBefore, checked-tokenless; n != want {
		t.Errorf("tokenless routes: authz asked %d times, want %d (all but the %d tokenless anonymous requests)", n, want, tokenless)
	}
	// Spot checks of what "the same" means, so that a gateway that broke both alike fails.
	x := asked.exchange("GET", "/shop/catalog/9", with(forged, "X-Cart", "c9", "X-Forwarded-For", "192.0.2.1"), "")
	for h, want := range map[string]string{"X-Cart": "c9", "Accept-Language": "fr", "Traceparent": forged.Get("Traceparent"),
		"X-User-Id": "", "X-Client-Id": "", "X-Token-Issuer": "", "X-Specgate-Client": "", "X-Evil": ""} {
		if got := x.Backend.Get(h); got != want {
			t.Errorf("backend got %s %q, want %q", h, got, want)
		}
	}
	if strings.Contains(alone.Envoy.Log(), "x-specgate-client") {
		t.Errorf("Envoy logged the internal header")
	}
}
