package translate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// pathGroup is every operation of one path shape that a listener serves, with the service
// owning each; none when the shape's operations are all internal and this is the public one.
type pathGroup struct {
	tmpl ir.Template
	ops  []groupOp
}

type groupOp struct {
	svc *ir.Service
	op  *ir.Operation
}

// groupPaths gathers the operations a listener serves by path shape, in matching order:
// concrete paths before templated ones (ir.ComparePaths).
func (t *translator) groupPaths(gw ir.Gateway, internal bool) []pathGroup {
	byShape := map[string]*pathGroup{}
	for si := range gw.Services {
		s := &gw.Services[si]
		for oi := range s.Operations {
			op := &s.Operations[oi]
			tmpl, err := t.template(op.Path)
			if err != nil {
				continue // ir.Validate and compiler.Build refuse these before translation
			}
			g := byShape[tmpl.Shape()]
			if g == nil {
				g = &pathGroup{tmpl: tmpl}
				byShape[tmpl.Shape()] = g
			}
			if op.Exposure == ir.Internal && !internal {
				continue // on the public listener an internal operation is undeclared
			}
			g.ops = append(g.ops, groupOp{s, op})
		}
	}
	groups := make([]pathGroup, 0, len(byShape))
	for _, g := range byShape {
		slices.SortFunc(g.ops, func(a, b groupOp) int { return cmp.Compare(a.op.Method, b.op.Method) })
		groups = append(groups, *g)
	}
	slices.SortFunc(groups, func(a, b pathGroup) int { return ir.ComparePaths(a.tmpl, b.tmpl) })
	return groups
}

// template parses path once per translation, and once per Cache while the path stays.
func (t *translator) template(path string) (ir.Template, error) {
	if tmpl, ok := t.templates[path]; ok {
		return tmpl, nil
	}
	tmpl, ok := ir.Template{}, false
	if t.cache != nil {
		tmpl, ok = t.cache.template(path)
	}
	if !ok {
		var err error
		if tmpl, err = ir.ParseTemplate(path); err != nil {
			return tmpl, err
		}
	}
	t.templates[path] = tmpl
	return tmpl, nil
}

// routeConfig is the listener's route table: per path its method routes and a 405 with Allow,
// then a JSON 404 for every other path. A path whose operations are all internal still gets a
// 404 of its own on the public listener, in its place in the order: otherwise a public template
// after it (/orders/{id} after /orders/admin) would carry the request to the backend.
func (t *translator) routeConfig(name string, gw ir.Gateway, internal bool) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	for _, g := range t.groupPaths(gw, internal) {
		routes = append(routes, t.groupRoutes(g, func() []*routev3.Route { return t.pathRoutes(g) })...)
	}
	routes = append(routes, t.notFound())
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

// pathRoutes are the routes of one path shape: a 404 where the listener serves none of its
// operations, else the CORS preflight, one route per method and the 405 with Allow.
func (t *translator) pathRoutes(g pathGroup) []*routev3.Route {
	if len(g.ops) == 0 {
		return []*routev3.Route{t.notFoundAt(g.tmpl)}
	}
	var routes []*routev3.Route
	allow := make([]string, 0, len(g.ops))
	for _, o := range g.ops {
		allow = append(allow, o.op.Method)
	}
	if owner := g.ops[0].svc; owner.CORS != nil {
		routes = append(routes, t.preflight(g.tmpl, owner, allow))
	}
	for _, o := range g.ops {
		r := t.operationRoute(g.tmpl, o.svc, o.op, allow)
		if t.tokenless(o.op) {
			routes = append(routes, t.tokenlessRoute(proto.Clone(r).(*routev3.Route), o.op))
		}
		routes = append(routes, r)
	}
	return append(routes, t.methodNotAllowed(g.tmpl, g.ops[0].svc, allow))
}

// pathMatch matches the template: an exact path, Envoy's uri_template with unnamed globs
// (no variable-count or name limits), or an anchored RE2 regex for what templates cannot say.
func (t *translator) pathMatch(tmpl ir.Template) *routev3.RouteMatch {
	if !tmpl.Templated() {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: tmpl.Raw}}
	}
	if glob, ok := uriTemplate(tmpl); ok {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathMatchPolicy{
			PathMatchPolicy: &corev3.TypedExtensionConfig{
				Name:        "envoy.path.match.uri_template.uri_template_matcher",
				TypedConfig: t.pack(&uritemplatev3.UriTemplateMatchConfig{PathTemplate: glob}),
			},
		}}
	}
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{
		SafeRegex: &matcherv3.RegexMatcher{Regex: pathRegex(tmpl)},
	}}
}

// uriLiteral is what Envoy's uri_template accepts in a literal segment.
var uriLiteral = regexp.MustCompile(`^[A-Za-z0-9\-._~!$&'()+,;:@=]+$`)

// uriTemplate writes tmpl as a uri_template of literal segments and * globs, when it can.
func uriTemplate(tmpl ir.Template) (string, bool) {
	var b strings.Builder
	for _, s := range tmpl.Segments {
		b.WriteByte('/')
		switch {
		case len(s.Parts) == 1 && s.Parts[0].Var != "":
			b.WriteByte('*')
		case len(s.Parts) == 1 && uriLiteral.MatchString(s.Parts[0].Literal):
			b.WriteString(s.Parts[0].Literal)
		default:
			return "", false // empty segment, or text and variables mixed in one segment
		}
	}
	if b.Len() > 256 {
		return "", false
	}
	return b.String(), true
}

// pathRegex matches the whole path; a variable is one or more characters of one segment.
func pathRegex(tmpl ir.Template) string {
	var b strings.Builder
	b.WriteByte('^')
	for _, s := range tmpl.Segments {
		b.WriteByte('/')
		for _, p := range s.Parts {
			if p.Var != "" {
				b.WriteString("[^/]+")
			} else {
				b.WriteString(regexp.QuoteMeta(p.Literal))
			}
		}
	}
	b.WriteByte('$')
	return b.String()
}

// pathRewrite maps the gateway path to the backend's: basePath stripped when asked, the
// backend URL's path put in front (nil: forwarded as is).
func pathRewrite(svc *ir.Service) *matcherv3.RegexMatchAndSubstitute {
	strip := svc.StripBasePath && svc.BasePath != ""
	prefix := svc.Backend.PathPrefix
	switch {
	case strip && prefix == "":
		return &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(svc.BasePath) + "(/|$)"},
			Substitution: "/",
		}
	case strip: // /orders/42 → /api/42, /orders → /api
		return &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(svc.BasePath)},
			Substitution: prefix,
		}
	case prefix != "": // /orders/42 → /api/orders/42
		return &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^/"},
			Substitution: prefix + "/",
		}
	}
	return nil
}

func methodMatch(m *routev3.RouteMatch, method string) *routev3.RouteMatch {
	m.Headers = []*routev3.HeaderMatcher{{
		Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: method}},
		},
	}}
	return m
}

// operationRoute forwards one operation to its service with the operation's policy.
func (t *translator) operationRoute(tmpl ir.Template, svc *ir.Service, op *ir.Operation, allow []string) *routev3.Route {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: svc.Name},
		RateLimits:       rateLimitActions(op, authzMetadata(policy.DescClient, policy.MetaClient)),
	}
	if op.Timeout > 0 {
		action.Timeout = durationpb.New(op.Timeout)
	}
	action.RegexRewrite = pathRewrite(svc)
	if !isIP(svc.Backend.Host) {
		action.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
	}
	authz, md := t.authzPerRoute(op)
	perFilter := map[string]*anypb.Any{FilterExtAuthz: authz}
	if svc.CORS != nil {
		perFilter[FilterCORS] = t.pack(corsPolicy(svc.CORS, allow))
	}
	return &routev3.Route{
		Name:                 op.ID,
		StatPrefix:           ir.StatName(op.ID),
		Match:                methodMatch(t.pathMatch(tmpl), op.Method),
		Action:               &routev3.Route_Route{Route: action},
		TypedPerFilterConfig: perFilter,
		Metadata:             md,
	}
}

// preflight matches CORS preflights (OPTIONS with Access-Control-Request-Method) on a path of
// a service with a CORS policy. The CORS filter answers them before authz and rate limits; it
// needs a forwarding route to read the policy from (it ignores direct-response routes), but
// never forwards a preflight it does not accept. What it lets through (no Origin: not a
// browser preflight) meets ext_authz with no policy and is refused: this route must never
// become a way around authorization.
func (t *translator) preflight(tmpl ir.Template, svc *ir.Service, allow []string) *routev3.Route {
	m := methodMatch(t.pathMatch(tmpl), "OPTIONS")
	m.Headers = append(m.Headers, &routev3.HeaderMatcher{
		Name:                 "access-control-request-method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
	})
	pol := corsPolicy(svc.CORS, allow)
	pol.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	return &routev3.Route{
		Name:                 fmt.Sprintf("%s.preflight:%s", svc.Name, tmpl.Shape()),
		Match:                m,
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: svc.Name}}},
		TypedPerFilterConfig: map[string]*anypb.Any{FilterCORS: t.pack(pol)},
	}
}

// methodNotAllowed answers a known path with an undeclared method: 405 and Allow naming only
// the methods this listener serves.
func (t *translator) methodNotAllowed(tmpl ir.Template, svc *ir.Service, allow []string) *routev3.Route {
	body, _ := json.Marshal(map[string]any{"error": "method_not_allowed", "allow": allow})
	return &routev3.Route{
		Name:                 fmt.Sprintf("%s.405:%s", svc.Name, tmpl.Shape()),
		Match:                t.pathMatch(tmpl),
		Action:               directResponse(405, string(body)),
		ResponseHeadersToAdd: append(jsonHeader(), header("allow", strings.Join(allow, ", "))),
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
}

// notFoundAt answers 404 on one path that this listener does not serve.
func (t *translator) notFoundAt(tmpl ir.Template) *routev3.Route {
	r := t.notFound()
	r.Name = "specgate.404:" + tmpl.Shape()
	r.Match = t.pathMatch(tmpl)
	return r
}

// notFound answers every undeclared path.
func (t *translator) notFound() *routev3.Route {
	return &routev3.Route{
		Name:                 "specgate.404",
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               directResponse(404, `{"error":"not_found"}`),
		ResponseHeadersToAdd: jsonHeader(),
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
}

func directResponse(status uint32, body string) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: status,
		Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}},
	}}
}

func jsonHeader() []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{header("content-type", "application/json")}
}

func header(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
