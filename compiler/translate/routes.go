package translate

import (
	"encoding/json"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"regexp"
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

// routeConfig is the listener's route table, route by route as the model orders it; the
// routes of one path come from the cache when nothing they depend on changed.
func (t *translator) routeConfig(l ir.Listener) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	if !t.set.AllowSemicolons {
		routes = append(routes, t.semicolonRoute())
	}
	var maxBody uint32
	for _, d := range l.Documents {
		routes = append(routes, t.documentRoute(d))
		maxBody = max(maxBody, uint32(len(d.Body)))
	}
	shadowed := t.shadowedLiterals(l)
	for rest := l.Routes; len(rest) > 0; {
		n := 1
		for n < len(rest) && rest[0].Path != "" && rest[n].Path == rest[0].Path {
			n++
		}
		group := rest[:n]
		rest = rest[n:]
		routes = append(routes, t.groupRoutes(group, func() []*routev3.Route { return t.pathRoutes(group) })...)
		if shadowed[group[0].Path] {
			routes = append(routes, t.pathFormRoute(group[0].Path))
		}
	}
	rc := &routev3.RouteConfiguration{
		Name: l.Name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:        l.Name,
			Domains:     []string{"*"},
			Routes:      routes,
			RetryPolicy: t.transportRetries(),
		}},
	}
	if maxBody > 4096 { // Envoy's default bound of a direct response's body
		rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(maxBody)
	}
	return rc
}

// documentRoute answers GET and HEAD of document d from Envoy itself, before any operation
// route (the compiler refuses an operation whose path could take it), with no authz: the
// description is public on its listener.
func (t *translator) documentRoute(d ir.Document) *routev3.Route {
	m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: d.Path}}
	m.Headers = []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "GET|HEAD"}}},
	}}}
	return &routev3.Route{
		Name:                 "specgate.description:" + d.Path,
		Match:                m,
		Action:               directResponse(200, d.Body),
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{header("content-type", d.ContentType), header("cache-control", "no-cache")},
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
}

// pathRoutes maps the model's routes of one path (or the catch-all) to Envoy's.
func (t *translator) pathRoutes(group []ir.Route) []*routev3.Route {
	var tmpl ir.Template
	if group[0].Path != "" {
		var err error
		if tmpl, err = t.template(group[0].Path); err != nil {
			t.fail("route %s: %v", group[0].Name, err) // ir.Validate refuses these first
			return nil
		}
	}
	routes := make([]*routev3.Route, 0, len(group))
	var base *routev3.Route // the operation route a tokenless route copies
	for _, r := range group {
		svc := t.svcs[r.Service]
		switch r.Kind {
		case ir.RouteOperation, ir.RouteTokenless:
			op := t.ops[r.Operation]
			if base == nil || base.Name != op.ID {
				base = t.operationRoute(tmpl, svc, op, r)
			}
			if r.Kind == ir.RouteTokenless {
				routes = append(routes, t.tokenlessRoute(proto.Clone(base).(*routev3.Route), op, r))
			} else {
				routes = append(routes, base)
			}
		case ir.RoutePreflight:
			routes = append(routes, t.preflight(r.Name, tmpl, svc, r.Allow))
		case ir.RouteMethodNotAllowed:
			routes = append(routes, t.methodNotAllowed(r.Name, tmpl, r.Allow))
		case ir.RouteNotFound:
			nf := t.notFound()
			if r.Path != "" {
				nf.Name, nf.Match = r.Name, t.pathMatch(tmpl)
			}
			routes = append(routes, nf)
		}
	}
	return routes
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

// operationRoute forwards one operation to its service with the operation's policy (r: its
// route or its tokenless route, which share what is read here).
func (t *translator) operationRoute(tmpl ir.Template, svc *ir.Service, op *ir.Operation, r ir.Route) *routev3.Route {
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
	authz, md := t.authzPerRoute(op, r.Forward)
	perFilter := map[string]*anypb.Any{FilterExtAuthz: authz}
	if svc.CORS != nil {
		perFilter[FilterCORS] = t.pack(corsPolicy(svc.CORS, r.Allow))
	}
	if len(op.IPAllow) > 0 {
		perFilter[FilterRBAC] = t.ipAllowPerRoute(op.IPAllow)
	}
	if op.Validation != nil {
		perFilter[FilterExtProc] = t.validatePerRoute(op)
	}
	if op.Retries != nil {
		action.RetryPolicy = t.retryPolicy(op.Retries, op.Method)
	}
	if ws := op.WebSocket; ws != nil {
		action.UpgradeConfigs = []*routev3.RouteAction_UpgradeConfig{{UpgradeType: upgradeWebSocket, Enabled: wrapperspb.Bool(true)}}
		action.IdleTimeout = durationpb.New(ws.IdleTimeout)
		action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(ws.MaxDuration)}
	}
	if op.MaxRequestBodyBytes > 0 {
		perFilter[FilterBuffer] = t.pack(&bufferv3.BufferPerRoute{Override: &bufferv3.BufferPerRoute_Buffer{
			Buffer: &bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(op.MaxRequestBodyBytes)}}})
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
func (t *translator) preflight(name string, tmpl ir.Template, svc *ir.Service, allow []string) *routev3.Route {
	m := methodMatch(t.pathMatch(tmpl), "OPTIONS")
	m.Headers = append(m.Headers, &routev3.HeaderMatcher{
		Name:                 "access-control-request-method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
	})
	pol := corsPolicy(svc.CORS, allow)
	pol.ForwardNotMatchingPreflights = wrapperspb.Bool(false)
	return &routev3.Route{
		Name:                 name,
		Match:                m,
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: svc.Name}}},
		TypedPerFilterConfig: map[string]*anypb.Any{FilterCORS: t.pack(pol)},
	}
}

// methodNotAllowed answers a known path with an undeclared method: 405 and Allow naming only
// the methods this listener serves.
func (t *translator) methodNotAllowed(name string, tmpl ir.Template, allow []string) *routev3.Route {
	body, _ := json.Marshal(map[string]any{"error": "method_not_allowed", "allow": allow})
	return &routev3.Route{
		Name:                 name,
		Match:                t.pathMatch(tmpl),
		Action:               directResponse(405, string(body)),
		ResponseHeadersToAdd: append(jsonHeader(), header("allow", strings.Join(allow, ", "))),
		TypedPerFilterConfig: map[string]*anypb.Any{FilterExtAuthz: t.authzDisabled()},
	}
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

// retryPolicy retries a request of method as r says (ir.Retries.For). A route's policy
// replaces its virtual host's (transportRetries), whose conditions For keeps.
func (t *translator) retryPolicy(r *ir.Retries, method string) *routev3.RetryPolicy {
	p := t.retryOn(r.For(method), r.Attempts)
	if r.PerTryTimeout > 0 {
		p.PerTryTimeout = durationpb.New(r.PerTryTimeout)
	}
	return p
}

// transportRetries is every route's retry where no backend saw the request (ir.RetrySafe).
func (t *translator) transportRetries() *routev3.RetryPolicy {
	return t.retryOn(ir.RetrySafe, ir.TransportRetries)
}

// retryOn retries on the conditions on, each retry on another backend host when the service
// has several (a headless Service's pods).
func (t *translator) retryOn(on []string, attempts uint32) *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    strings.Join(on, ","),
		NumRetries: wrapperspb.UInt32(attempts),
		RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: t.pack(&previoushostsv3.PreviousHostsPredicate{})},
		}},
		HostSelectionRetryMaxAttempts: 3,
	}
}
