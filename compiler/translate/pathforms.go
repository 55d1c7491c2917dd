package translate

import (
	"regexp"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/compiler/ir"
)

// Path forms. Backend frameworks read some paths as others: Tomcat and Spring cut a segment at
// ";" (matrix parameters), ASP.NET matches paths in any case, Rails reads a trailing ".json" as
// the format of the same path. A templated route beside a literal one (/items/{id} beside the
// protected /items/admin) would take /items/admin;x=1, /items/ADMIN or /items/admin.json under
// its own, maybe weaker, policy to a backend that serves them as /items/admin. So:
//   - a path holding ";" (or %3B) gets 400, unless gateway.yaml listeners.allowSemicolons;
//   - a literal path that a template of the same listener also matches is followed by a route
//     that answers 404 to its other forms: in any case, or with more after a ".", ";" or "%"
//     in its last segment. Only such literals: elsewhere no weaker route could take them.

// semicolonRoute refuses the paths with a semicolon, first in the table.
func (t *translator) semicolonRoute() *routev3.Route {
	return &routev3.Route{
		Name: "specgate.semicolon",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: `(?i).*(;|%3b).*`},
		}},
		Action:               directResponse(400, `{"error":"invalid_request","error_description":"a path with ; is not accepted"}`),
		ResponseHeadersToAdd: jsonHeader(),
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
}

// pathFormRoute answers 404 to the other forms of the literal path.
func (t *translator) pathFormRoute(path string) *routev3.Route {
	return &routev3.Route{
		Name: "specgate.path-form:" + path,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: `(?i)` + regexp.QuoteMeta(path) + `(?:[.;%][^/]*)?`},
		}},
		Action:               directResponse(404, `{"error":"not_found"}`),
		ResponseHeadersToAdd: jsonHeader(),
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
}

// shadowedLiterals are the literal paths of l that one of its templated paths also matches.
func (t *translator) shadowedLiterals(l ir.Listener) map[string]bool {
	bySegments := map[int][]ir.Template{}
	var literals []ir.Template
	for i, r := range l.Routes {
		if r.Path == "" || (i > 0 && l.Routes[i-1].Path == r.Path) {
			continue
		}
		tmpl, err := t.template(r.Path)
		if err != nil {
			continue // pathRoutes reports it
		}
		if tmpl.Templated() {
			bySegments[len(tmpl.Segments)] = append(bySegments[len(tmpl.Segments)], tmpl)
		} else {
			literals = append(literals, tmpl)
		}
	}
	out := map[string]bool{}
	for _, lit := range literals {
		for _, tmpl := range bySegments[len(lit.Segments)] {
			if tmpl.Matches(lit.Raw) {
				out[lit.Raw] = true
				break
			}
		}
	}
	return out
}
