package ir

import (
	"slices"
	"strings"
	"testing"

	"github.com/specgate/specgate/config"
)

func planned(t *testing.T, cfg config.Gateway) Gateway {
	t.Helper()
	anon, protected := Security{Anonymous: true}, Security{AnyOf: []Requirement{{Scopes: []string{"orders:read"}}}}
	gw := Gateway{Services: []Service{
		{Name: "orders", Backend: Backend{Host: "orders", Port: 80}, Operations: []Operation{
			{ID: "orders.admin", Method: "GET", Path: "/orders/admin", Exposure: Internal, Security: protected},
			{ID: "orders.get", Method: "GET", Path: "/orders/{id}", Exposure: Public, Security: protected},
			{ID: "orders.track", Method: "POST", Path: "/orders/{id}", Exposure: Public, Security: anon,
				RateLimits: []RateLimit{{Requests: 1, Per: Second, Key: KeyHeader, Header: "X-Tenant"}}},
		}},
		{Name: "shop", Backend: Backend{Host: "shop", Port: 80}, CORS: &CORS{AllowOrigins: []string{"*"}}, Operations: []Operation{
			{ID: "shop.list", Method: "GET", Path: "/items", Exposure: Public, Security: anon},
		}},
	}}
	gw, err := Plan(gw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Validate(); err != nil {
		t.Fatal(err)
	}
	return gw
}

func table(l Listener) []string {
	var out []string
	for _, r := range l.Routes {
		out = append(out, string(r.Kind)+" "+r.Name)
	}
	return out
}

// The route table the model decides: paths in ComparePaths order (concrete before templated);
// an internal-only path a 404 of its own on the public listener, in its place; a preflight where the owner has CORS; a tokenless
// route for an anonymous operation without header keys; a 405 per path; the catch-all last.
func TestPlanRouteTable(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners.Public, cfg.Listeners.Internal = 9080, 9081
	gw := planned(t, cfg)
	want := map[string][]string{
		"public": {
			"not-found specgate.404:/orders/admin",
			"operation orders.get", "operation orders.track", "method-not-allowed orders.405:/orders/{}",
			"preflight shop.preflight:/items", "tokenless shop.list", "operation shop.list", "method-not-allowed shop.405:/items",
			"not-found specgate.404",
		},
		"internal": {
			"operation orders.admin", "method-not-allowed orders.405:/orders/admin",
			"operation orders.get", "operation orders.track", "method-not-allowed orders.405:/orders/{}",
			"preflight shop.preflight:/items", "tokenless shop.list", "operation shop.list", "method-not-allowed shop.405:/items",
			"not-found specgate.404",
		},
	}
	for _, l := range gw.Listeners {
		if got := table(l); !slices.Equal(got, want[l.Name]) {
			t.Errorf("%s (port %d):\n got %q\nwant %q", l.Name, l.Port, got, want[l.Name])
		}
	}
	if gw.Listeners[0].Port != 9080 || gw.Listeners[1].Port != 9081 {
		t.Errorf("ports %d, %d", gw.Listeners[0].Port, gw.Listeners[1].Port)
	}
	cfg.Authz.CheckTokenless = true
	for _, l := range planned(t, cfg).Listeners {
		for _, r := range l.Routes {
			if r.Kind == RouteTokenless {
				t.Errorf("authz.checkTokenless: %s still has tokenless route %s", l.Name, r.Name)
			}
		}
	}
}

// A route table that says something the model does not hold is refused, not translated.
func TestValidateRouteTable(t *testing.T) {
	for name, edit := range map[string]func(*Gateway){
		"unknown operation":      func(g *Gateway) { g.Listeners[0].Routes[1].Operation = "shop.gone" },
		"tokenless protected":    func(g *Gateway) { g.Listeners[0].Routes[1].Kind = RouteTokenless },
		"no catch-all":           func(g *Gateway) { g.Listeners[0].Routes = g.Listeners[0].Routes[:3] },
		"unparsable path":        func(g *Gateway) { g.Listeners[1].Routes[0].Path = "/a//b" },
		"unknown kind":           func(g *Gateway) { g.Listeners[1].Routes[0].Kind = "redirect" },
		"405 without allow":      func(g *Gateway) { g.Listeners[1].Routes[1].Allow = nil },
		"duplicate listener":     func(g *Gateway) { g.Listeners[1].Name = g.Listeners[0].Name },
		"method of another op":   func(g *Gateway) { g.Listeners[0].Routes[1].Method = "PUT" },
		"preflight of no owner":  func(g *Gateway) { g.Listeners[0].Routes[4].Service = "" },
		"listener without port":  func(g *Gateway) { g.Listeners[0].Port = 0 },
		"tokenless header-keyed": func(g *Gateway) { g.Listeners[0].Routes[2].Kind = RouteTokenless },
		"internal op in public":  func(g *Gateway) { g.Services[0].Operations[1].Exposure = Internal },
		"another service's op":   func(g *Gateway) { g.Listeners[0].Routes[1].Service = "shop" },
		"unknown listener":       func(g *Gateway) { g.Listeners[1].Name = "admin" },
	} {
		gw := planned(t, config.Default())
		edit(&gw)
		if err := gw.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "listener") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
