package translate_test

import (
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
)

// The decision cache is compiled only when authz.decisionCacheTTL is set: its Lua filter just
// before ext_authz, ext_authz skipped on its hits, and every protected route's key and
// allow-list in the route's metadata, the key changing with the route's policy.
func TestDecisionCacheCompiled(t *testing.T) {
	routeKeys := func(ttl time.Duration, allowed ...string) (filters []string, keys map[string]string, skips bool) {
		t.Helper()
		gw := compile(t, "../../examples/specs")
		gw.Services[0].Operations[0].AllowedHeaders = append(gw.Services[0].Operations[0].AllowedHeaders, allowed...)
		cfg := config.Default()
		cfg.Authz.DecisionCacheTTL.Duration = ttl
		res, err := translate.Translate(gw, translate.Options{Gateway: cfg})
		if err != nil {
			t.Fatal(err)
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := res.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		for _, f := range hcm.HttpFilters {
			filters = append(filters, f.Name)
		}
		keys = map[string]string{}
		for _, vh := range res.Routes[0].VirtualHosts {
			for _, r := range vh.Routes {
				if md := r.GetMetadata().GetFilterMetadata()[policy.CacheFilter]; md != nil {
					keys[r.Name] = md.Fields[policy.CacheRouteKey].GetStringValue()
					if len(md.Fields[policy.CacheAllow].GetListValue().GetValues()) < len(policy.BaseHeaders) {
						t.Errorf("route %s: allow-list %v lacks the base headers", r.Name, md.Fields[policy.CacheAllow])
					}
				}
			}
		}
		return filters, keys, len(hcm.HttpFilters) > 2 && hcm.HttpFilters[2].Name == "envoy.filters.http.ext_authz"
	}

	off, offKeys, _ := routeKeys(0)
	if len(offKeys) != 0 || len(off) != 4 {
		t.Fatalf("cache off: filters %v, %d routes with cache metadata", off, len(offKeys))
	}
	on, keys, extAuthzThird := routeKeys(time.Second)
	if len(on) != 5 || on[1] != policy.CacheFilter || !extAuthzThird {
		t.Fatalf("cache on: filters %v, want cors, %s, ext_authz, ratelimit, router", on, policy.CacheFilter)
	}
	if len(keys) == 0 {
		t.Fatal("cache on: no route carries the cache metadata")
	}
	_, changed, _ := routeKeys(time.Second, "x-new-header")
	diff := 0
	for name, k := range keys {
		if changed[name] != k {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("one route's policy changed, %d route keys changed", diff)
	}
}
