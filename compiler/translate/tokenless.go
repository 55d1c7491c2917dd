package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// Requests without an Authorization header on anonymous operations never reach authz
// (gateway.yaml authz.checkTokenless false, the default): in front of each such operation's
// route sits its tokenless route, which matches the same requests without that header,
// disables ext_authz and does in Envoy what authz's allow does for them (extauthz's
// server.allow without an identity):
//   - every identity header is removed, and every header outside the operation's allow-list
//     (a header_mutation remove_on_match, whose regex matches exactly the other names);
//   - the rate-limit client is "ip:<trusted client address>", the address Envoy derives with
//     xffTrustedHops, carried in headerTokenlessClient from header_mutation to the rate-limit
//     descriptors and removed before the backend.
//
// An empty Authorization header counts as present: it goes to authz, which refuses it.
// Operations with header:<Name> rate-limit keys stay with authz, which picks the header's
// value or the address per request.

// headerTokenlessClient carries a tokenless request's rate-limit client (reserved: specs
// cannot allow it, so no backend ever sees it on either route).
const headerTokenlessClient = "x-specgate-client"

// metaTokenless is the route metadata namespace that marks a tokenless route, for the
// access log: authz was not asked.
const metaTokenless = "specgate.tokenless"

// The regex of an allow-list lives once per listener, in a header_mutation filter of the
// HTTP filter chain that is off by default (headerFilters); each tokenless route turns on the
// one of its operation. Envoy keeps a compiled RE2 of about 100 KB for each regex it is given:
// one per route, as this was first built, took Envoy to 360 MB for the real descriptions of
// make specs, and a fleet of anonymous operations past the pods' memory limit.

// tokenlessRoute turns a copy of op's route into its tokenless route, route.
func (t *translator) tokenlessRoute(r *routev3.Route, op *ir.Operation, route ir.Route) *routev3.Route {
	r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
		Name:                 "authorization",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false},
	})
	if !op.QueryToken {
		// A request that may carry an access_token query parameter goes to authz, which
		// refuses it (RFC 6750 §2.3; the backend might act on a token nobody checked). These
		// match the name anywhere in the path, encoded or not: authz reads the query exactly.
		for _, name := range []string{policy.QueryTokenParam, strings.Replace(policy.QueryTokenParam, "_", "%5f", 1)} {
			r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
				Name:        ":path",
				InvertMatch: true,
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Contains{Contains: name}, IgnoreCase: true,
				}},
			})
		}
	}
	// The router removes the identity headers too: a route can reach Envoy before the listener
	// that carries its header filter (the two are separate xDS resources), and no backend may
	// meanwhile see a client's X-User-Id.
	r.RequestHeadersToRemove = slices.Clone(t.set.IdentityHeaders)
	// The filters with nothing to do here are left out of the request's filter chain (Envoy
	// does not create them), which costs less than passing through them.
	off := t.pack(&routev3.FilterConfig{Disabled: true})
	r.TypedPerFilterConfig[FilterExtAuthz] = off
	if len(op.RateLimits) == 0 {
		r.TypedPerFilterConfig[FilterRateLimit] = off
	}
	if _, cors := r.TypedPerFilterConfig[FilterCORS]; !cors {
		r.TypedPerFilterConfig[FilterCORS] = off
	}
	if t.edgeCache() {
		r.TypedPerFilterConfig[policy.CacheFilter] = off
	}
	if t.plugin() {
		r.TypedPerFilterConfig[FilterAuthzPlugin] = off
	}
	// On: a filter off by default needs a route config to turn it on, an empty one here.
	r.TypedPerFilterConfig[headerFilterName(route.Forward)] = t.pack(&routev3.FilterConfig{
		Config: t.pack(&headermutationv3.HeaderMutationPerRoute{}),
	})
	if limitsByClient(op) {
		r.TypedPerFilterConfig[FilterHeaderMutation] = t.pack(&headermutationv3.HeaderMutationPerRoute{
			Mutations: &headermutationv3.Mutations{RequestMutations: []*mutationv3.HeaderMutation{{
				Action: &mutationv3.HeaderMutation_Append{
					Append: header(headerTokenlessClient, policy.AnonymousClient("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")),
				},
			}}},
		})
		r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, headerTokenlessClient)
		r.GetRoute().RateLimits = rateLimitActions(op, requestHeader(policy.DescClient, headerTokenlessClient))
	}
	r.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		metaTokenless: {Fields: map[string]*structpb.Value{"tokenless": structpb.NewBoolValue(true)}},
	}}
	return r
}

// headerFilters are the header_mutation filters of listener l's tokenless routes, all off by
// default: one per allow-list, ordered by name, then, when an operation limits tokenless
// requests by client, the one that adds the client header (not on any allow-list: reserved).
// They come from the model, not from the routes built: those may come from the cache.
func (t *translator) headerFilters(l ir.Listener) []*hcmv3.HttpFilter {
	lists, byClient := map[string][]string{}, false
	for _, r := range l.Routes {
		if r.Kind == ir.RouteTokenless {
			lists[headerFilterName(r.Forward)] = r.Forward
			byClient = byClient || limitsByClient(t.ops[r.Operation])
		}
	}
	var fs []*hcmv3.HttpFilter
	for _, name := range slices.Sorted(maps.Keys(lists)) {
		fs = append(fs, t.httpFilter(name, &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{
			RequestMutations: []*mutationv3.HeaderMutation{{Action: &mutationv3.HeaderMutation_RemoveOnMatch_{
				RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{KeyMatcher: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
						Regex: t.otherHeaders(lists[name]),
					}},
				}},
			}}},
		}}))
	}
	if byClient {
		fs = append(fs, t.httpFilter(FilterHeaderMutation, &headermutationv3.HeaderMutation{}))
	}
	for _, f := range fs {
		f.Disabled = true
	}
	return fs
}

func limitsByClient(op *ir.Operation) bool {
	return slices.ContainsFunc(op.RateLimits, func(rl ir.RateLimit) bool { return rl.Key == ir.KeyClient })
}

// headerFilterName names the header filter of an allow-list by its content, so that a
// listener changes only when the set of allow-lists does.
func headerFilterName(keep []string) string {
	sum := sha256.Sum256([]byte(strings.Join(keep, " ")))
	return HeaderFilterPrefix + hex.EncodeToString(sum[:6])
}

// HeaderFilterPrefix starts the names of the header filters.
const HeaderFilterPrefix = "specgate.headers."

// otherHeaders is the regex of the headers a tokenless request with allow-list keep loses
// (ir.HeaderRule, whose size Plan checked). Built once per translation and allow-list.
func (t *translator) otherHeaders(keep []string) string {
	if t.keepRegex == nil {
		t.keepRegex = map[string]string{}
	}
	key := strings.Join(keep, " ")
	rx, ok := t.keepRegex[key]
	if !ok {
		rx = ir.HeaderRule(keep)
		t.keepRegex[key] = rx
	}
	return rx
}

func requestHeader(descriptorKey, name string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: name, DescriptorKey: descriptorKey},
	}}
}
