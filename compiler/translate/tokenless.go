package translate

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
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
//     (one header_mutation remove_on_match, whose regex matches exactly the other names);
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

// tokenlessRoute turns a copy of op's route into its tokenless route.
func (t *translator) tokenlessRoute(r *routev3.Route, op *ir.Operation) *routev3.Route {
	r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
		Name:                 "authorization",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false},
	})
	byClient := slices.ContainsFunc(op.RateLimits, func(rl ir.RateLimit) bool { return rl.Key == ir.KeyClient })
	muts := []*mutationv3.HeaderMutation{{Action: &mutationv3.HeaderMutation_RemoveOnMatch_{
		RemoveOnMatch: &mutationv3.HeaderMutation_RemoveOnMatch{KeyMatcher: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
				Regex: t.otherHeaders(op),
			}},
		}},
	}}}
	if byClient {
		muts = append(muts, &mutationv3.HeaderMutation{Action: &mutationv3.HeaderMutation_Append{
			Append: header(headerTokenlessClient, "ip:%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
		}})
		r.RequestHeadersToRemove = []string{headerTokenlessClient}
		r.GetRoute().RateLimits = rateLimitActions(op, requestHeader(policy.DescClient, headerTokenlessClient))
	}
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
	r.TypedPerFilterConfig[FilterHeaderMutation] = t.pack(&headermutationv3.HeaderMutationPerRoute{
		Mutations: &headermutationv3.Mutations{RequestMutations: muts},
	})
	r.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		metaTokenless: {Fields: map[string]*structpb.Value{"tokenless": structpb.NewBoolValue(true)}},
	}}
	return r
}

// maxRegexProgram is the RE2 program size Envoy accepts (bootstrap runtime). A regex of
// otherHeaders may use half of it: Go's count, checked here, and RE2's differ a little.
const maxRegexProgram = 1 << 15

// otherHeaders is the regex of the headers a tokenless request on op loses: all but the base
// headers and the operation's own, less the identity headers (authz removes those whatever
// the allow-list says). Most operations share one allow-list: built once per translation.
func (t *translator) otherHeaders(op *ir.Operation) string {
	if t.keepRegex == nil { // the first tokenless route of this translation
		t.keepRegex = map[string]string{}
	}
	var keep []string
	for _, h := range slices.Concat(policy.BaseHeaders, op.AllowedHeaders) {
		if _, found := slices.BinarySearch(t.set.IdentityHeaders, h); !found {
			keep = append(keep, h)
		}
	}
	key := strings.Join(keep, " ")
	if rx, ok := t.keepRegex[key]; ok {
		return rx
	}
	rx := otherHeaders(keep)
	if n := programSize(rx); n > maxRegexProgram/2 {
		t.fail("route %s: %d allowed headers make a header rule of %d RE2 instructions (at most %d): allow fewer", op.ID, len(keep), n, maxRegexProgram/2)
	}
	t.keepRegex[key] = rx
	return rx
}

func programSize(rx string) int {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return math.MaxInt
	}
	p, err := syntax.Compile(re.Simplify())
	if err != nil {
		return math.MaxInt
	}
	return len(p.Inst)
}

func requestHeader(descriptorKey, name string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: name, DescriptorKey: descriptorKey},
	}}
}

// otherHeaders is an anchored RE2 regex matching every header name except keep's (lower
// case) and the pseudo-headers (":path"...). RE2 has no negative lookahead, so it walks
// keep's trie: at each node a name either ends where no kept name does, leaves the trie with
// a byte no kept name has there, or goes on into a child. Its program is some hundreds of
// instructions, past Envoy's default limit of 100 (bootstrap runtime raises it).
func otherHeaders(keep []string) string {
	root := &trieNode{}
	for _, name := range keep {
		root.add(name)
	}
	var b strings.Builder
	b.WriteByte('^')
	root.other(&b, true)
	b.WriteByte('$')
	return b.String()
}

type trieNode struct {
	end  bool
	next map[byte]*trieNode
}

func (n *trieNode) add(s string) {
	for i := 0; i < len(s); i++ {
		if n.next == nil {
			n.next = map[byte]*trieNode{}
		}
		c := n.next[s[i]]
		if c == nil {
			c = &trieNode{}
			n.next[s[i]] = c
		}
		n = c
	}
	n.end = true
}

// other writes the alternatives for the rest of a name that is not kept, from node n.
func (n *trieNode) other(b *strings.Builder, root bool) {
	next := make([]byte, 0, len(n.next))
	for c := range n.next {
		next = append(next, c)
	}
	slices.Sort(next)
	b.WriteString("(?:")
	if !n.end && !root {
		b.WriteString("|") // ends here, where no kept name does (never empty: not at the root)
	}
	if len(next) == 0 && !root {
		b.WriteString(".+") // goes on past a kept name's end
	} else {
		b.WriteString("[^") // leaves the trie here; pseudo-headers (":path") stay
		if root {
			b.WriteString(`\x3a`)
		}
		for _, c := range next {
			if isAlnum(c) {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(b, `\x%02x`, c) // "-" would make a range
			}
		}
		b.WriteString("].*")
	}
	for _, c := range next {
		b.WriteByte('|')
		b.WriteString(regexp.QuoteMeta(string(c)))
		n.next[c].other(b, false)
	}
	b.WriteByte(')')
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
