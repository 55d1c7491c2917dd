package translate

import (
	"google.golang.org/protobuf/types/known/wrapperspb"
	"strconv"
	"strings"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/specgate/specgate/compiler/ir"
)

// corsPolicy is the per-route policy of a service. The CORS filter sits first in the chain, so
// it answers preflights before authentication and rate limiting see them.
func corsPolicy(c *ir.CORS, methods []string) *corsv3.CorsPolicy {
	p := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(methods, ","),
		AllowHeaders:  strings.Join(c.AllowHeaders, ","),
		ExposeHeaders: strings.Join(c.ExposeHeaders, ","),
	}
	for _, o := range c.AllowOrigins {
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}}
		if o == "*" {
			m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}
		}
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, m)
	}
	if c.AllowCredentials {
		p.AllowCredentials = wrapperspb.Bool(true)
	}
	if c.MaxAge > 0 {
		p.MaxAge = strconv.Itoa(int(c.MaxAge.Seconds()))
	}
	return p
}
