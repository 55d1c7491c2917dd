package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/specgen"
	"github.com/specgate/specgate/test/harness/testutil"
)

// The Check servers other than specgate authz: the no-op server, specgate authz feeding the
// authz plugin (gateway.yaml authz.plugin; its Envoys run the plugin), specgate authz with
// authz.decisionCacheTTL = benchCacheTTL, whose Envoys have the decision cache too, specgate
// authz with the access log on (it then returns the decision for the log), with tracing on
// (exporting to the no-op server, which also takes OTLP), and with both.
const (
	authzNoop     = "noop"
	authzCache    = "cache"
	authzPlugin   = "plugin" // specgate authz feeding the authz plugin of the plugin variants
	authzLog      = "log"
	authzTrace    = "trace"
	authzLogTrace = "logtrace"
)

// benchCacheTTL is the decision cache's TTL in the cache variants, as docs/operations.md
// suggests: a revocation takes effect at the edge within it.
const benchCacheTTL = 500 * time.Millisecond

// The compiled HCM's filters (translate.Filter*), and Envoy's jwt_authn for its variant.
const (
	filterCORS      = translate.FilterCORS
	filterBuffer    = translate.FilterBuffer
	filterExtAuthz  = translate.FilterExtAuthz
	filterMutation  = translate.FilterHeaderMutation
	filterRateLimit = translate.FilterRateLimit
	filterRouter    = translate.FilterRouter
	filterExtProc   = translate.FilterExtProc
	filterJWT       = "envoy.filters.http.jwt_authn"
	filterPlugin    = translate.FilterAuthzPlugin
)

// variant is one Envoy of the comparison: the compiled config with some filters removed (and
// for jwt_authn one added), everything else (route, hardening, clusters) as compiled.
type variant struct {
	key, label string
	keep       []string // compiled filters kept, in their order
	jwtAuthn   bool     // insert Envoy's jwt_authn before the router
	wasm       string   // insert the do-nothing Wasm filter (wasmPlugin) on this runtime before the router
	accessLog  bool     // gateway.yaml accessLog: {format: json}
	authz      string   // the Check server ext_authz calls: "" (specgate authz), authzNoop, authzCache
	wantNoAuth int      // status of a request without a token (proves the auth filter is on)
	tracing    float64  // gateway.yaml tracing.sampling (0: off); spans go to the no-op server
	load       string   // what it is sent: "" (GET /orders/{id} with the token), loadCatalog, loadMix
	manyTokens bool     // its requests carry tokens.zipf in turn instead of tokens.one
	cpuPeer    string   // the variant its CPU per request is compared with ("": the first)

	url, admin string
	otlp       string // the OTLP receiver's address
	envoy      *proc
}

// The loads other than GET /orders/{id} with a token: the anonymous GET /catalog/{id} without
// a token, and a storefront's mix of 80 % of those and 20 % of the first.
const (
	loadCatalog = "catalog"
	loadMix     = "mix"
	loadPost    = "post" // POST /shops/{shop}/orders with a 2 KB order and the token
)

// tokens are what the loads carry: one token repeated, or zipf, a sequence drawn from
// zipfTokens distinct tokens of distinct users by a Zipf distribution (s = 1.1), as real traffic
// has a few busy users and a long tail.
type tokens struct {
	one  string
	zipf []string
}

// zipfTokens is the size of the many-token population.
const zipfTokens = 10_000

// targets are the requests of v's load, sent in turn.
func (v *variant) targets(ts tokens) []vegeta.Target {
	seq := []string{ts.one}
	if v.manyTokens {
		seq = ts.zipf
	}
	var out []vegeta.Target
	for _, token := range seq {
		orders, catalog := get(v.url+"/orders/42", token), get(v.url+"/catalog/42", "")
		switch v.load {
		case loadPost:
			out = append(out, post(v.url, token, order2KB))
		case loadCatalog:
			out = append(out, catalog)
		case loadMix:
			out = append(out, catalog, catalog, catalog, catalog, orders)
		default:
			out = append(out, orders)
		}
	}
	return out
}

var order2KB = specgen.Order2KB()

// compiled is the whole HTTP filter chain as compiled, ratelimit aside: the tokenless route's
// own cost. The storefront mix keeps ratelimit too (compiledRL): its anonymous route has a
// per-IP limit, as a real one would.
var (
	compiled   = []string{filterCORS, filterBuffer, filterExtAuthz, filterMutation, filterRouter}
	compiledRL = []string{filterCORS, filterBuffer, filterExtAuthz, filterMutation, filterRateLimit, filterRouter}
)

// variants are the Envoys measured; each one whose filters read the token also runs with the
// Zipf mix of tokens (key@zipf), as a twin.
func variants() []*variant {
	vs := oneTokenVariants()
	for _, v := range slices.Clone(vs) {
		verifies := v.jwtAuthn || slices.Contains(v.keep, filterExtAuthz) && v.authz != authzNoop
		if !verifies || v.load == loadCatalog {
			continue // no token, or nothing reads it: a twin would measure the same
		}
		t := *v
		t.key, t.label, t.manyTokens = v.key+zipfSuffix, v.label+", 10,000 tokens", true
		if i := slices.IndexFunc(vs, func(p *variant) bool { return p.key == v.cpuPeer }); v.cpuPeer != "" && i >= 0 &&
			(vs[i].jwtAuthn || slices.Contains(vs[i].keep, filterExtAuthz)) {
			t.cpuPeer = v.cpuPeer + zipfSuffix
		}
		vs = append(vs, &t)
	}
	return vs
}

// zipfSuffix marks the many-token twin of a variant.
const zipfSuffix = "@zipf"

func oneTokenVariants() []*variant {
	return []*variant{
		{key: "none", label: "Envoy, no auth", keep: []string{filterRouter}, wantNoAuth: 200},
		{key: "authz", label: "Envoy + specgate authz", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, wantNoAuth: 401},
		{key: "authz+rl", label: "Envoy + specgate authz + ratelimit", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRateLimit, filterRouter}, wantNoAuth: 401},
		{key: "authz+plugin", label: "Envoy + specgate authz plugin (Wasm), token route without rate limit", keep: []string{filterCORS, filterBuffer, filterPlugin, filterExtAuthz, filterRouter}, authz: authzPlugin, wantNoAuth: 401, cpuPeer: "jwt_authn"},
		{key: "authz+cache", label: "Envoy + specgate authz, decision cache", keep: []string{filterCORS, filterBuffer, policy.CacheFilter, filterExtAuthz, filterRouter}, authz: authzCache, wantNoAuth: 401},
		{key: "authz+cache+rl", label: "Envoy + specgate authz, decision cache + ratelimit", keep: []string{filterCORS, filterBuffer, policy.CacheFilter, filterExtAuthz, filterRateLimit, filterRouter}, authz: authzCache, wantNoAuth: 401},
		{key: "authz+log", label: "Envoy + specgate authz, JSON access log", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, authz: authzLog, accessLog: true, wantNoAuth: 401},
		{key: "authz+trace1", label: "Envoy + specgate authz, tracing 1 %", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, authz: authzTrace, tracing: 0.01, wantNoAuth: 401},
		{key: "authz+trace100", label: "Envoy + specgate authz, tracing 100 %", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, authz: authzTrace, tracing: 1, wantNoAuth: 401},
		{key: "authz+log+trace1", label: "Envoy + specgate authz, JSON access log + tracing 1 %", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, authz: authzLogTrace, accessLog: true, tracing: 0.01, wantNoAuth: 401},
		{key: "noop-ext_authz", label: "Envoy + no-op ext_authz server", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, authz: authzNoop, wantNoAuth: 200},
		{key: "jwt_authn", label: "Envoy + jwt_authn (local JWKS)", keep: []string{filterRouter}, jwtAuthn: true, wantNoAuth: 401},
		// The spike gate of an authz decision inside Envoy: a filter that does nothing, on the one
		// Wasm runtime this Envoy has (v8; wasmtime and wamr are not compiled in), against jwt_authn.
		{key: "wasm-noop", label: "Envoy + do-nothing Wasm filter (v8)", keep: []string{filterRouter}, wasm: "v8", wantNoAuth: 200, cpuPeer: "jwt_authn"},
		{key: "post", label: "Envoy + specgate authz, POST 2 KB", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterRouter}, wantNoAuth: 401, load: loadPost, cpuPeer: "post"},
		{key: "post+validate", label: "Envoy + specgate authz + validate, POST 2 KB", keep: []string{filterCORS, filterBuffer, filterExtAuthz, filterExtProc, filterRouter}, wantNoAuth: 401, load: loadPost, cpuPeer: "post"},
		{key: "catalog-none", label: "Envoy, no auth", keep: []string{filterRouter}, wantNoAuth: 200, load: loadCatalog, cpuPeer: "catalog-none"},
		{key: "catalog-specgate", label: "Envoy + specgate, tokenless route", keep: compiled, wantNoAuth: 401, load: loadCatalog, cpuPeer: "catalog-none"},
		{key: "mix-none", label: "Envoy, no auth", keep: []string{filterRouter}, wantNoAuth: 200, load: loadMix, cpuPeer: "mix-none"},
		{key: "mix-specgate", label: "Envoy + specgate (authz for the 20 %)", keep: compiledRL, wantNoAuth: 401, load: loadMix, cpuPeer: "mix-none"},
		{key: "mix-specgate+cache", label: "Envoy + specgate, decision cache", keep: slices.Insert(slices.Clone(compiledRL), 2, policy.CacheFilter), authz: authzCache, wantNoAuth: 401, load: loadMix, cpuPeer: "mix-none"},
		{key: "mix-specgate+plugin", label: "Envoy + specgate, authz plugin (token route without rate limit)", keep: slices.Insert(slices.Clone(compiledRL), 2, filterPlugin), authz: authzPlugin, wantNoAuth: 401, load: loadMix, cpuPeer: "mix-none"},
		{key: "mix-jwt_authn", label: "Envoy + jwt_authn (local JWKS) + ratelimit", keep: []string{filterRateLimit, filterRouter}, jwtAuthn: true, wantNoAuth: 401, load: loadMix, cpuPeer: "mix-none"},
	}
}

// envoyConfig writes v's static bootstrap into dir: specgate's compiled listeners (routes
// inline) with the HCM unpacked, its filters swapped, and packed again.
func envoyConfig(v *variant, gw ir.Gateway, cfg config.Gateway, key *devissuer.Key, authzAddr, rlAddr, validateAddr, dir string) (string, error) {
	cfg.Validation.Address = validateAddr
	pub, err := freeAddr()
	if err != nil {
		return "", err
	}
	internal, err := freeAddr()
	if err != nil {
		return "", err
	}
	if v.admin, err = freeAddr(); err != nil {
		return "", err
	}
	cfg.Listeners.Public, cfg.Listeners.Internal = port(pub), port(internal)
	if v.authz == authzCache {
		cfg.Authz.DecisionCacheTTL.Duration = benchCacheTTL
	}
	if v.authz == authzPlugin {
		cfg.Authz.Plugin = config.AuthzPlugin{Module: authzPluginModule, FeedAddress: pluginFeed, Interval: config.Duration{Duration: 250 * time.Millisecond},
			StaleAfter: config.Duration{Duration: 2 * time.Second}, Credential: feed.Credential(adminToken)}
		gw = withoutTokenRouteLimits(gw)
	}
	if v.accessLog {
		cfg.AccessLog = config.AccessLog{Format: "json"}
	}
	if v.tracing > 0 {
		cfg.Tracing = config.Tracing{OTLP: v.otlp, Sampling: v.tracing}
	}
	res, err := envoyResources(gw, cfg, translate.Options{ListenAddress: "127.0.0.1", InlineRoutes: true})
	if err != nil {
		return "", err
	}
	boot, err := translate.Bootstrap(res, translate.BootstrapOptions{NodeID: "bench-" + v.key, AdminAddress: v.admin,
		AuthzAddress: authzAddr, RateLimitAddr: rlAddr})
	if err != nil {
		return "", err
	}
	for _, l := range boot.StaticResources.Listeners {
		fs := l.FilterChains[0].Filters
		f := fs[len(fs)-1] // the connection manager: the terminal filter
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			return "", fmt.Errorf("%s: listener %s: %w", v.key, l.Name, err)
		}
		if err := swapFilters(v, hcm, key); err != nil {
			return "", err
		}
		if err := hcm.ValidateAll(); err != nil {
			return "", fmt.Errorf("%s: listener %s: %w", v.key, l.Name, err)
		}
		a, err := anypb.New(hcm)
		if err != nil {
			return "", err
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	if err := boot.ValidateAll(); err != nil {
		return "", fmt.Errorf("%s: bootstrap: %w", v.key, err)
	}
	y, err := translate.YAML(boot)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "envoy-"+v.key+".yaml")
	if err := os.WriteFile(path, y, 0o644); err != nil {
		return "", err
	}
	v.url = "http://" + pub
	return path, nil
}

// swapFilters keeps v's filters of the compiled HCM, adds jwt_authn if asked, and drops the
// per-route settings of the filters removed (ext_authz per-route config, rate_limits actions).
func swapFilters(v *variant, hcm *hcmv3.HttpConnectionManager, key *devissuer.Key) error {
	var filters []*hcmv3.HttpFilter
	for _, f := range hcm.HttpFilters {
		if !v.keeps(f.Name) {
			continue
		}
		if f.Name == filterRouter && v.jwtAuthn {
			jf, err := jwtAuthnFilter(key)
			if err != nil {
				return err
			}
			filters = append(filters, jf)
		}
		if f.Name == filterRouter && v.wasm != "" {
			wf, err := wasmFilter(v.wasm)
			if err != nil {
				return err
			}
			filters = append(filters, wf)
		}
		filters = append(filters, f)
	}
	for _, name := range v.keep {
		if !slices.ContainsFunc(filters, func(f *hcmv3.HttpFilter) bool { return f.Name == name || name == filterMutation && v.keeps(f.Name) }) {
			return fmt.Errorf("%s: compiled HCM lacks %s", v.key, name)
		}
	}
	hcm.HttpFilters = filters
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.Routes {
			for name := range r.TypedPerFilterConfig {
				if !v.keeps(name) {
					delete(r.TypedPerFilterConfig, name)
				}
			}
			if ra := r.GetRoute(); ra != nil && !slices.Contains(v.keep, filterRateLimit) {
				ra.RateLimits = nil
			}
		}
	}
	return nil
}

// keeps says whether v keeps the compiled filter name: one of v.keep, or with filterMutation
// the tokenless routes' header filters (one per allow-list, named translate.HeaderFilterPrefix…).
func (v *variant) keeps(name string) bool {
	return slices.Contains(v.keep, name) ||
		slices.Contains(v.keep, filterMutation) && strings.HasPrefix(name, translate.HeaderFilterPrefix)
}

// jwtAuthnFilter is Envoy's native JWT filter with the same key (local JWKS), issuer and
// audience as specgate authz, requiring a valid token on every path but the anonymous
// /catalog/, with its verified-token cache on (specgate caches too) and the subject forwarded
// as a header like specgate's.
func jwtAuthnFilter(key *devissuer.Key) (*hcmv3.HttpFilter, error) {
	rec := httptest.NewRecorder()
	devissuer.JWKS(key).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("jwks: %d", rec.Code)
	}
	cfg := &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{"bench": {
			Issuer:    issuer,
			Audiences: []string{audience},
			JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: rec.Body.String()},
			}},
			ClaimToHeaders: []*jwtv3.JwtClaimToHeader{{HeaderName: "x-user-id", ClaimName: "sub"}},
			JwtCacheConfig: &jwtv3.JwtCacheConfig{JwtCacheSize: 100_000}, // authz's cache size
		}},
		Rules: []*jwtv3.RequirementRule{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/catalog/"}}, // no requirement
		}, {
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
				RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: "bench"},
			}},
		}},
	}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("jwt_authn: %w", err)
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: filterJWT, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// authzPluginModule is the authz plugin (extauthz/plugin) that run builds for the plugin
// variants, and pluginFeed the HTTP address of the authz that feeds it.
var authzPluginModule, pluginFeed string

// withoutTokenRouteLimits is gw with no rate limit on the operations that need a token: the
// plugin decides only routes without (a Wasm filter cannot give the ratelimit filter its
// client), and jwt_authn, which gives none either, counts nothing there.
func withoutTokenRouteLimits(gw ir.Gateway) ir.Gateway {
	gw.Services = slices.Clone(gw.Services)
	for i, svc := range gw.Services {
		svc.Operations = slices.Clone(svc.Operations)
		for j, op := range svc.Operations {
			if !op.Security.Anonymous {
				op.RateLimits = nil
				svc.Operations[j] = op
			}
		}
		gw.Services[i] = svc
	}
	return gw
}

// wasmPlugin is the do-nothing plugin (./wasmnoop) that run builds for the wasm variants.
var wasmPlugin string

// wasmFilter is Envoy's Wasm HTTP filter running wasmPlugin on runtime (envoy.wasm.runtime.*).
func wasmFilter(runtime string) (*hcmv3.HttpFilter, error) {
	cfg := &wasmv3.Wasm{Config: &wasmcommonv3.PluginConfig{
		Name: "noop", RootId: "noop",
		Vm: &wasmcommonv3.PluginConfig_VmConfig{VmConfig: &wasmcommonv3.VmConfig{
			VmId: "noop", Runtime: "envoy.wasm.runtime." + runtime,
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{
				Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: wasmPlugin}},
			}},
		}},
	}}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("wasm: %w", err)
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.wasm", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// buildWasm compiles a proxy-wasm plugin's main package into dir/name.wasm.
func buildWasm(dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name+".wasm")
	return out, testutil.BuildWasm(pkg, out)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startEnvoy runs v's Envoy (2 workers, like every other peer here) until stopAll.
func startEnvoy(v *variant, bin, path string) error {
	var err error
	v.envoy, err = start("envoy-"+v.key, nil, bin, "-c", path, "--use-dynamic-base-id", "--log-level", "warn",
		"--concurrency", "2", "--drain-time-s", "1", "--parent-shutdown-time-s", "2")
	if err != nil {
		return err
	}
	return v.envoy.waitHTTP("http://"+v.admin+"/ready", 30*time.Second)
}
