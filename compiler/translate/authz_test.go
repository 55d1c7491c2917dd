package translate_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
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
		cfg := config.Default()
		cfg.Authz.DecisionCacheTTL.Duration = ttl
		gw := compile(t, "../../examples/specs", cfg)
		gw.Services[0].Operations[0].AllowedHeaders = append(gw.Services[0].Operations[0].AllowedHeaders, allowed...)
		res, err := translate.Translate(gw, translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := res.Listeners[0].FilterChains[0].Filters[len(res.Listeners[0].FilterChains[0].Filters)-1].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		for _, f := range hcm.HttpFilters {
			if strings.HasPrefix(f.Name, "specgate.headers.") {
				continue // one per allow-list: TestHeaderFilters
			}
			filters = append(filters, f.Name)
			ea := &extauthzv3.ExtAuthz{}
			if f.GetTypedConfig().UnmarshalTo(ea) == nil {
				skips = ea.GetFilterEnabledMetadata().GetFilter() == policy.CacheFilter
			}
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
		return filters, keys, skips
	}

	// The examples' createOrder validates requests: ext_proc comes last.
	const cors, buffer, extAuthz, rl, extProc, router = translate.FilterCORS, translate.FilterBuffer,
		translate.FilterExtAuthz, translate.FilterRateLimit, translate.FilterExtProc, translate.FilterRouter
	off, offKeys, offSkips := routeKeys(0)
	if want := []string{cors, buffer, extAuthz, rl, extProc, router}; len(offKeys) != 0 || !slices.Equal(off, want) || offSkips {
		t.Fatalf("cache off: filters %v (want %v), %d routes with cache metadata, ext_authz skippable %v", off, want, len(offKeys), offSkips)
	}
	on, keys, onSkips := routeKeys(time.Second)
	if want := []string{cors, buffer, policy.CacheFilter, extAuthz, rl, extProc, router}; !slices.Equal(on, want) || !onSkips {
		t.Fatalf("cache on: filters %v (want %v), ext_authz skipped on hits %v", on, want, onSkips)
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

// The decision cache's route keys change with any gateway setting (a new one cannot be left
// out of them) but the store URLs, which carry passwords and are in no decision.
func TestDecisionCacheKeysFollowTheGatewaySettings(t *testing.T) {
	keys := func(edit func(*config.Gateway)) map[string]string {
		t.Helper()
		cfg := config.Default()
		cfg.Authz.DecisionCacheTTL.Duration = time.Second
		edit(&cfg)
		res, err := translate.Translate(compile(t, "../../examples/specs", cfg), translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, vh := range res.Routes[0].VirtualHosts {
			for _, r := range vh.Routes {
				if md := r.GetMetadata().GetFilterMetadata()[policy.CacheFilter]; md != nil {
					out[r.Name] = md.Fields[policy.CacheRouteKey].GetStringValue()
				}
			}
		}
		return out
	}
	base := keys(func(*config.Gateway) {})
	for name, edit := range map[string]func(*config.Gateway){
		"xffTrustedHops": func(g *config.Gateway) { g.XFFTrustedHops = 2 },
		"maxTokenBytes":  func(g *config.Gateway) { g.Authz.MaxTokenBytes = 9000 },
		"claims.client":  func(g *config.Gateway) { g.Claims.Client = config.ClaimNames{"cid"} },
	} {
		for route, k := range keys(edit) {
			if base[route] == k {
				t.Errorf("%s changed, the key of %s did not", name, route)
			}
		}
	}
	stores := keys(func(g *config.Gateway) {
		g.Revocation.Store, g.RateLimit.Store = "redis://:secret@10.0.0.3:6379/0", "redis://:secret@10.0.0.3:6379/1"
	})
	for route, k := range stores {
		if base[route] != k {
			t.Errorf("a store URL changed the key of %s", route)
		}
	}
}
