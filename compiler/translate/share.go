package translate

import (
	"crypto/sha256"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	setstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	netsetstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
)

// The listeners share one route table. The internal listener serves every public operation
// too, and Envoy holds a route table's routes, their per-route filter configs and their stats
// once per table: two tables held each public operation twice (with one table, Envoy's
// memory per operation falls by 46 %: BenchmarkEnvoyMemory, docs/benchmarks.md). Both
// listeners name the one table over RDS; a route that only some listeners have (an internal
// operation, a 405 whose Allow differs, a listener's own API description) matches only on
// them, by the listener's name, which a network filter puts in each connection's filter state
// before any byte of a request is read: no client can set or change it.
const (
	// SharedRoutes names the shared route configuration and its one virtual host (the
	// envoy_virtual_host of the routes' stats).
	SharedRoutes = "gateway"
	// ListenerState is the filter-state key holding the listener's name.
	ListenerState = "specgate.listener"
)

// sharedRoute is a route of the merged table and the listeners (by index) that have it.
type sharedRoute struct {
	r  *routev3.Route
	d  [32]byte
	on []int
}

// shareRoutes merges the listeners' route tables (in the listeners' order) into one that
// each listener, matching only its own routes, walks exactly as it would its own table:
// every table's routes appear in its order, a route equal in several tables once, so first
// match per listener is unchanged. A guarded route is a copy: cached routes stay untouched.
func (t *translator) shareRoutes(ls []ir.Listener, rcs []*routev3.RouteConfiguration, known routeDigests) *routev3.RouteConfiguration {
	digestOf := func(r *routev3.Route) [32]byte {
		if d, ok := known.get(r); ok {
			return d
		}
		d, err := digest(r)
		if err != nil {
			t.fail("route %s: %v", r.Name, err)
		}
		return d
	}
	var merged []sharedRoute
	for _, r := range rcs[0].VirtualHosts[0].Routes {
		merged = append(merged, sharedRoute{r: r, d: digestOf(r), on: []int{0}})
	}
	for k := 1; k < len(rcs); k++ {
		merged = mergeTable(merged, rcs[k].VirtualHosts[0].Routes, k, digestOf)
	}
	vh := &routev3.VirtualHost{} // the listeners' virtual hosts differ in their routes only
	copyFields(rcs[0].VirtualHosts[0], vh, "routes")
	vh.Name, vh.Routes = SharedRoutes, make([]*routev3.Route, 0, len(merged))
	var prev map[[32]byte]guardedRoute
	if t.cache != nil {
		prev = t.cache.guarded
	}
	next, valid := map[[32]byte]guardedRoute{}, map[*routev3.Route][32]byte{}
	for _, m := range merged {
		if len(m.on) == len(ls) {
			vh.Routes = append(vh.Routes, m.r)
			continue
		}
		key := sha256.Sum256(fmt.Appendf(m.d[:], "%v", m.on))
		g, ok := prev[key]
		if !ok {
			g.route = proto.Clone(m.r).(*routev3.Route)
			g.route.Match.FilterState = append(g.route.Match.FilterState, listenerGuard(ls, m.on))
			// Validated here, so that a copy from the cache is known valid.
			if err := g.route.ValidateAll(); err != nil {
				t.fail("route %s: %w", g.route.Name, err)
				continue
			}
			var err error
			if g.digest, err = digest(g.route); err != nil {
				t.fail("route %s: %v", g.route.Name, err)
				continue
			}
		}
		next[key], valid[g.route] = g, g.digest
		vh.Routes = append(vh.Routes, g.route)
	}
	t.guardedDigests = valid
	if t.cache != nil {
		t.cache.guarded = next
	}
	rc := &routev3.RouteConfiguration{Name: SharedRoutes, VirtualHosts: []*routev3.VirtualHost{vh}}
	for _, c := range rcs {
		if n := c.GetMaxDirectResponseBodySizeBytes().GetValue(); n > rc.GetMaxDirectResponseBodySizeBytes().GetValue() {
			rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(n)
		}
	}
	return rc
}

// mergeTable merges listener k's routes into merged, keeping both orders: walking both, a
// route equal in both is shared; a route of k's that merged does not hold further on is k's
// alone; otherwise merged's route comes first.
func mergeTable(merged []sharedRoute, routes []*routev3.Route, k int, digestOf func(*routev3.Route) [32]byte) []sharedRoute {
	last := make(map[[32]byte]int, len(merged)) // a digest's last position in merged
	for i, m := range merged {
		last[m.d] = i
	}
	out := make([]sharedRoute, 0, len(merged)+len(routes))
	i := 0
	for _, r := range routes {
		d := digestOf(r)
		for {
			if i < len(merged) && merged[i].d == d {
				merged[i].on = append(merged[i].on, k)
				out = append(out, merged[i])
				i++
				break
			}
			if p, ok := last[d]; !ok || p < i {
				out = append(out, sharedRoute{r: r, d: d, on: []int{k}})
				break
			}
			out = append(out, merged[i])
			i++
		}
	}
	return append(out, merged[i:]...)
}

// listenerGuard matches the connections of the listeners on (indexes into ls).
func listenerGuard(ls []ir.Listener, on []int) *matcherv3.FilterStateMatcher {
	names := make([]string, len(on))
	for i, k := range on {
		names[i] = ls[k].Name
	}
	m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: names[0]}}
	if len(names) > 1 { // listener names are plain words (ir.Validate)
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(names, "|")}}
	}
	return &matcherv3.FilterStateMatcher{Key: ListenerState, Matcher: &matcherv3.FilterStateMatcher_StringMatch{StringMatch: m}}
}

// listenerStateFilter puts the listener's name in each new connection's filter state, for
// the shared table's guarded routes.
func (t *translator) listenerStateFilter(name string) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: "envoy.filters.network.set_filter_state",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(&netsetstatev3.Config{
			OnNewConnection: []*setstatev3.FilterStateValue{{
				Key:        &setstatev3.FilterStateValue_ObjectKey{ObjectKey: ListenerState},
				FactoryKey: "envoy.string",
				Value: &setstatev3.FilterStateValue_FormatString{FormatString: &corev3.SubstitutionFormatString{
					Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
						Specifier: &corev3.DataSource_InlineString{InlineString: name},
					}},
				}},
			}},
		})},
	}
}

// union is listener l serving every listener's routes, for the filters of a connection
// manager whose table is shared: each filter a shared route turns on must be in every chain.
func union(l ir.Listener, ls []ir.Listener) ir.Listener {
	var routes []ir.Route
	for _, o := range ls {
		routes = append(routes, o.Routes...)
	}
	l.Routes = routes
	return l
}
