package translate

import (
	"encoding/json"

	xdscorev3 "github.com/cncf/xds/go/xds/core/v3"
	matcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	skipv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/matcher/action/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	inputsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	wasmcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/policy"
)

// The authz plugin (gateway.yaml authz.plugin): a Wasm filter just before ext_authz allows the
// token requests it can decide (extauthz/plugin) and then sets a filter state that makes Envoy
// skip ext_authz; every other request goes to ext_authz as without it. It reads its feed from
// authz's HTTP port through ClusterAuthzFeed.
const (
	FilterAuthzPlugin = "specgate.authz_plugin"
	ClusterAuthzFeed  = "specgate_authz_feed"
)

// plugin reports whether the authz plugin is on.
func (t *translator) plugin() bool { return t.set.Authz.Plugin != nil }

// pluginDecides reports whether the plugin may decide op's requests: its allow must be all of
// authz's. A Wasm filter cannot write the dynamic metadata that rate limits count by or that
// an API key's plan gives. And every header a Wasm filter changes makes Envoy match the route
// again: on an anonymous operation, a request whose Authorization the plugin removed would
// then match the tokenless route, which removes the identity headers the allow set.
func pluginDecides(op *ir.Operation) bool {
	if len(op.RateLimits) > 0 || op.Security.Anonymous {
		return false
	}
	for _, r := range op.Security.AnyOf {
		if r.APIKey != nil {
			return false
		}
	}
	return true
}

// pluginMetadata is the route metadata the plugin reads the route's policy from.
func pluginMetadata(encoded string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{policy.PluginFilter: {Fields: map[string]*structpb.Value{
		policy.PluginPolicy: structpb.NewStringValue(encoded),
	}}}}
}

// pluginFilter is Envoy's Wasm filter running the plugin, one VM per worker (v8, the one
// runtime this Envoy has).
func (t *translator) pluginFilter() *hcmv3.HttpFilter {
	p := t.set.Authz.Plugin
	cfg, err := json.Marshal(feed.PluginConfig{Cluster: ClusterAuthzFeed, Credential: p.Credential,
		Interval: p.Interval, StaleAfter: p.StaleAfter, Gateway: p.Gateway})
	if err != nil {
		t.fail("authz.plugin: %w", err)
		return nil
	}
	return t.httpFilter(FilterAuthzPlugin, &wasmv3.Wasm{Config: &wasmcommonv3.PluginConfig{
		Name:          FilterAuthzPlugin,
		Configuration: t.pack(wrapperspb.String(string(cfg))),
		// A plugin that cannot start fails its requests closed (503), never open.
		FailurePolicy: wasmcommonv3.FailurePolicy_FAIL_CLOSED,
		Vm: &wasmcommonv3.PluginConfig_VmConfig{VmConfig: &wasmcommonv3.VmConfig{
			VmId:    FilterAuthzPlugin,
			Runtime: "envoy.wasm.runtime.v8",
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{
				Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p.Module}},
			}},
		}},
	}})
}

// skipAfterPlugin wraps ext_authz so that Envoy skips it for a request the plugin allowed: the
// filter state is the plugin's own, nothing a client sends can set it.
func (t *translator) skipAfterPlugin(authz *extauthzv3.ExtAuthz) *hcmv3.HttpFilter {
	return t.httpFilter(FilterExtAuthz, &matchingv3.ExtensionWithMatcher{
		ExtensionConfig: &corev3.TypedExtensionConfig{Name: FilterExtAuthz, TypedConfig: t.pack(authz)},
		XdsMatcher: &matcherv3.Matcher{MatcherType: &matcherv3.Matcher_MatcherList_{MatcherList: &matcherv3.Matcher_MatcherList{
			Matchers: []*matcherv3.Matcher_MatcherList_FieldMatcher{{
				Predicate: &matcherv3.Matcher_MatcherList_Predicate{MatchType: &matcherv3.Matcher_MatcherList_Predicate_SinglePredicate_{
					SinglePredicate: &matcherv3.Matcher_MatcherList_Predicate_SinglePredicate{
						Input: &xdscorev3.TypedExtensionConfig{Name: "envoy.matching.inputs.filter_state",
							TypedConfig: t.pack(&inputsv3.FilterStateInput{Key: policy.PluginAllowState})},
						Matcher: &matcherv3.Matcher_MatcherList_Predicate_SinglePredicate_ValueMatch{
							ValueMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}},
						},
					},
				}},
				OnMatch: &matcherv3.Matcher_OnMatch{OnMatch: &matcherv3.Matcher_OnMatch_Action{Action: &xdscorev3.TypedExtensionConfig{
					Name: "skip", TypedConfig: t.pack(&skipv3.SkipFilter{}),
				}}},
			}},
		}}},
	})
}

// feedCluster is authz's HTTP port, where the plugin reads its feed (plain HTTP/1.1).
func (t *translator) feedCluster() *clusterv3.Cluster {
	as, err := addresses(t.set.Authz.Plugin.FeedAddress)
	if err != nil {
		t.fail("authz.plugin.feedAddress: %w", err)
		return nil
	}
	return addressCluster(ClusterAuthzFeed, as)
}
