package translate

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// authzCacheLua is the edge decision cache (authz.decisionCacheTTL), a Lua filter just before
// ext_authz; it reads the route metadata of authzCacheMetadata and authz's policy.MetaCache.
//
//go:embed authz_cache.lua
var authzCacheLua string

// edgeCache reports whether the edge decision cache is on.
func (t *translator) edgeCache() bool { return t.set.Authz.DecisionCacheTTL.Duration > 0 }

func authzCacheFilter() *luav3.Lua {
	return &luav3.Lua{
		StatPrefix: "specgate_authz_cache",
		// Like ext_authz's header changes, the cache's never pick another route (and a
		// re-match per request would cost more than the cache saves).
		ClearRouteCache:   wrapperspb.Bool(false),
		DefaultSourceCode: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: authzCacheLua}},
	}
}

// authzFilter calls specgate authz for every request that reaches an operation route. When
// the service cannot be asked, requests fail closed with 503 unless authz.failOpen is set.
func (t *translator) authzFilter() *extauthzv3.ExtAuthz {
	f := &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterAuthz}},
			Timeout:         durationpb.New(t.set.Authz.Timeout.Duration),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    t.set.Authz.FailOpen,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
	if t.edgeCache() {
		// Skipped only when the decision cache applied a reusable allow of authz.
		f.FilterEnabledMetadata = &matcherv3.MetadataMatcher{
			Filter: policy.CacheFilter,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "hit"}}},
			Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: true}},
			Invert: true,
		}
	}
	return f
}

// authzPerRoute hands the authz service the policy of exactly this route, in the same RDS
// update as the route itself, so the service keeps no per-route state.
// With the decision cache on, the route's metadata gives the cache the route's key and the
// headers it forwards (authzCacheMetadata); with the plugin, the policy (pluginMetadata).
func (t *translator) authzPerRoute(op *ir.Operation, forward []string) (*anypb.Any, *corev3.Metadata) {
	pol := policy.Route{ID: op.ID, Anonymous: op.Security.Anonymous, Headers: op.AllowedHeaders, QueryToken: op.QueryToken,
		WebSocket: op.WebSocket != nil}
	for _, r := range op.Security.AnyOf {
		pol.AnyOf = append(pol.AnyOf, policy.Requirement{Scopes: r.Scopes, Issuers: r.Issuers, APIKey: r.APIKey})
	}
	for _, rl := range op.RateLimits {
		if rl.Key == ir.KeyHeader || rl.Key == ir.KeyHeaderClient {
			pol.RateLimitHeaders = appendUnique(pol.RateLimitHeaders, strings.ToLower(rl.Header))
		}
	}
	ext, err := pol.Encode()
	if err != nil {
		t.fail("route %s: %v", op.ID, err)
		return nil, nil
	}
	per := t.pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext},
	}})
	switch {
	case t.edgeCache():
		return per, t.authzCacheMetadata(pol, ext[policy.ExtPolicy], forward)
	case t.plugin() && pluginDecides(op):
		return per, pluginMetadata(ext[policy.ExtPolicy])
	}
	return per, nil
}

// authzCacheMetadata is what the decision cache needs of a route: a key that changes with the
// route's policy and with the gateway's settings (ir.AuthzSettings.Rules), so that no allow
// made under other rules is reused, and the headers it forwards (the plan's ir.Route.Forward).
func (t *translator) authzCacheMetadata(pol policy.Route, encoded string, forward []string) *corev3.Metadata {
	h := sha256.New()
	h.Write([]byte(t.set.Authz.Rules))
	h.Write([]byte(encoded))
	sum := h.Sum(nil)
	var allow []*structpb.Value
	for _, name := range forward {
		allow = append(allow, structpb.NewStringValue(name))
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{policy.CacheFilter: {Fields: map[string]*structpb.Value{
		policy.CacheRouteKey: structpb.NewStringValue(pol.ID + "@" + hex.EncodeToString(sum[:8])),
		policy.CacheAllow:    structpb.NewListValue(&structpb.ListValue{Values: allow}),
	}}}}
}

// authzDisabled is for routes that answer from Envoy itself (404, 405): nothing to protect.
func (t *translator) authzDisabled() *anypb.Any {
	return t.pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
}
