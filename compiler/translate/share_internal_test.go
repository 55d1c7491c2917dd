package translate

import (
	"math/rand/v2"
	"slices"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/specgate/specgate/compiler/ir"
)

// Whatever two listeners' tables hold, each listener walks the shared table's routes that
// match it exactly as its own table, in order: first match is unchanged. Routes are drawn
// from a small set so that tables share some, in different orders and with repeats.
func TestSharedTableKeepsEachListenersOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	ls := []ir.Listener{{Name: "public"}, {Name: "internal"}}
	for trial := range 2000 {
		var tables [2][]*routev3.Route
		pool := make([]*routev3.Route, 1+rng.IntN(12))
		for i := range pool {
			pool[i] = route(string(rune('a' + i)))
		}
		for k := range tables {
			for range rng.IntN(15) {
				tables[k] = append(tables[k], pool[rng.IntN(len(pool))])
			}
		}
		tr := newTranslator(Options{}, ir.Gateway{})
		rcs := []*routev3.RouteConfiguration{
			{VirtualHosts: []*routev3.VirtualHost{{Routes: tables[0]}}},
			{VirtualHosts: []*routev3.VirtualHost{{Routes: tables[1]}}},
		}
		shared := tr.shareRoutes(ls, rcs, nil)
		if tr.err != nil {
			t.Fatal(tr.err)
		}
		for k, l := range ls {
			var walked []string
			for _, r := range shared.VirtualHosts[0].Routes {
				if matchesListener(r, l.Name) {
					walked = append(walked, r.Name)
				}
			}
			var own []string
			for _, r := range tables[k] {
				own = append(own, r.Name)
			}
			if !slices.Equal(walked, own) {
				t.Fatalf("trial %d: listener %s walks %v, its own table is %v", trial, l.Name, walked, own)
			}
		}
		if n := len(shared.VirtualHosts[0].Routes); n > len(tables[0])+len(tables[1]) {
			t.Fatalf("trial %d: %d routes for tables of %d and %d", trial, n, len(tables[0]), len(tables[1]))
		}
	}
}

// A route both listeners have, in the same place, is held once and unguarded.
func TestSharedTableHoldsCommonRoutesOnce(t *testing.T) {
	a, b, only := route("a"), route("b"), route("internal-only")
	tr := newTranslator(Options{}, ir.Gateway{})
	shared := tr.shareRoutes([]ir.Listener{{Name: "public"}, {Name: "internal"}}, []*routev3.RouteConfiguration{
		{VirtualHosts: []*routev3.VirtualHost{{Routes: []*routev3.Route{a, b}}}},
		{VirtualHosts: []*routev3.VirtualHost{{Routes: []*routev3.Route{a, only, b}}}},
	}, nil)
	routes := shared.VirtualHosts[0].Routes
	if len(routes) != 3 || routes[0] != a || routes[2] != b {
		t.Fatalf("shared table %v, want a, internal-only, b with a and b as given", routes)
	}
	if g := routes[1].GetMatch().GetFilterState(); len(g) != 1 || g[0].GetKey() != ListenerState || g[0].GetStringMatch().GetExact() != "internal" {
		t.Errorf("internal-only route's guard %v, want %s = internal", g, ListenerState)
	}
	if len(only.GetMatch().GetFilterState()) != 0 {
		t.Error("the guard was written into the given route (a cached route would change)")
	}
}

func route(name string) *routev3.Route {
	return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/" + name}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}}
}

// matchesListener says whether r's listener guard (if any) lets listener name's requests in.
func matchesListener(r *routev3.Route, name string) bool {
	for _, fs := range r.GetMatch().GetFilterState() {
		if fs.GetKey() == ListenerState && fs.GetStringMatch().GetExact() != name {
			return false
		}
	}
	return true
}
