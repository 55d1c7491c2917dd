package ir

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/policy"
)

// Names of the two listeners: public (internet-facing) and internal (in-cluster).
const (
	ListenerPublic   = "public"
	ListenerInternal = "internal"
)

// Listener is one port of the gateway and its route table.
type Listener struct {
	Name string `json:"name"`
	Port uint32 `json:"port"`
	// TLS, on the public listener, serves the same routes over HTTPS on a port of its own.
	TLS *config.ListenerTLS `json:"tls,omitempty"`
	// Routes are in match order: Envoy takes the first that matches. The last is the
	// catch-all 404.
	Routes []Route `json:"routes"`
	// Documents are what Envoy answers itself at their paths, before any route: the OpenAPI
	// description of the listener's operations (gateway.yaml apiDescription).
	Documents []Document `json:"documents,omitempty"`
}

// Document is a GET-able document at Path.
type Document struct {
	Path        string `json:"path"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// RouteKind is what a route does with the requests it matches.
type RouteKind string

const (
	// RouteOperation forwards one operation's requests to its service, through authz.
	RouteOperation RouteKind = "operation"
	// RouteTokenless matches an anonymous operation's requests without an Authorization
	// header, just before its operation route, and serves them without authz (Envoy does
	// what authz's allow would: docs/architecture.md, Which requests reach authz).
	RouteTokenless RouteKind = "tokenless"
	// RoutePreflight answers the CORS preflights of a path whose owner has a CORS policy.
	RoutePreflight RouteKind = "preflight"
	// RouteMethodNotAllowed answers 405 with Allow on a known path and another method.
	RouteMethodNotAllowed RouteKind = "method-not-allowed"
	// RouteNotFound answers 404: on Path, a path this listener does not serve (its
	// operations are all internal), in its place in the order; without Path, every path.
	RouteNotFound RouteKind = "not-found"
)

// Route is one entry of a listener's route table.
type Route struct {
	// Name is the Envoy route's name: the operation's ID for operation and tokenless routes.
	Name string    `json:"name"`
	Kind RouteKind `json:"kind"`
	// Path is the template the route matches (one per path shape); empty: every path.
	Path   string `json:"path,omitempty"`
	Method string `json:"method,omitempty"` // operation and tokenless routes
	// Service owns the route: its cluster, path rewrite and CORS policy. A path shape that
	// several services share (each with its own methods) is owned, for its preflight and
	// 405, by the service of its first method in alphabetical order.
	Service string `json:"service,omitempty"`
	// Operation is the operation's ID (operation and tokenless routes).
	Operation string `json:"operation,omitempty"`
	// Allow is every method this listener serves on Path: the 405's Allow header and the
	// CORS policy's methods.
	Allow []string `json:"allow,omitempty"`
	// Forward is every client header that reaches the backend (operation and tokenless
	// routes; lower case, sorted): policy.Forwarded of the operation's allowed headers. A
	// tokenless route removes the others itself (HeaderRule), and so does the edge decision
	// cache on an operation route.
	Forward []string `json:"forward,omitempty"`
}

// Settings are the gateway-wide settings of gateway.yaml that shape the Envoy resources,
// taken once from config.Gateway by Plan, so that translation reads the model alone.
type Settings struct {
	// Tokenless: the chain can serve tokenless routes (authz.checkTokenless false).
	Tokenless bool          `json:"tokenless,omitempty"`
	Authz     AuthzSettings `json:"authz"`
	// Validation is gateway.yaml's validation: Envoy's wait for specgate validate.
	Validation config.Validation `json:"validation"`
	// MaxRequestBodyBytes is the body limit; XFFTrustedHops the load balancers in front.
	MaxRequestBodyBytes uint32 `json:"maxRequestBodyBytes"`
	XFFTrustedHops      uint32 `json:"xffTrustedHops,omitempty"`
	// AllowSemicolons: paths may hold ";" (gateway.yaml listeners.allowSemicolons).
	AllowSemicolons bool `json:"allowSemicolons,omitempty"`
	// IdentityHeaders are the headers authz sets on an allow (lower case, sorted): never
	// taken from a client.
	IdentityHeaders []string         `json:"identityHeaders,omitempty"`
	AccessLog       config.AccessLog `json:"accessLog"`
	Tracing         config.Tracing   `json:"tracing"`
	// BackendTLS are gateway.yaml's backend TLS profiles, which Backend.TLSProfile names.
	BackendTLS map[string]config.BackendTLSProfile `json:"backendTLS,omitempty"`
}

// AuthzSettings are Envoy's side of authz.
type AuthzSettings struct {
	Timeout          config.Duration `json:"timeout"`
	FailOpen         bool            `json:"failOpen,omitempty"`
	DecisionCacheTTL config.Duration `json:"decisionCacheTTL"`
	// Rules is a digest of gateway.yaml but its store URLs (which carry passwords), when the
	// decision cache is on: every route's cache key changes with it, so that no allow made
	// under other settings is reused.
	Rules string `json:"rules,omitempty"`
	// Plugin is authz.plugin when on.
	Plugin *AuthzPlugin `json:"plugin,omitempty"`
}

// AuthzPlugin is authz.plugin with what the plugin needs of gateway.yaml (feed.Gateway).
type AuthzPlugin struct {
	config.AuthzPlugin
	Gateway config.Gateway `json:"gateway"`
}

// Plan gives the model its listeners, their route tables and the settings, from gateway.yaml.
func Plan(g Gateway, cfg config.Gateway) (Gateway, error) { return new(Planner).Plan(g, cfg) }

// Planner plans models and keeps the parsed path templates of its last plan for the next: a
// control plane plans the whole gateway again on every push, and nearly every path stays.
type Planner struct {
	mu   sync.Mutex
	last map[string]parsedPath
}

type parsedPath struct {
	tmpl  Template
	shape string
}

// Plan is ir.Plan, parsing only the paths the last plan did not have.
func (p *Planner) Plan(g Gateway, cfg config.Gateway) (Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return g, fmt.Errorf("plan: %w", err)
	}
	s := Settings{
		Tokenless: !cfg.Authz.CheckTokenless,
		Authz: AuthzSettings{Timeout: cfg.Authz.Timeout, FailOpen: cfg.Authz.FailOpen,
			DecisionCacheTTL: cfg.Authz.DecisionCacheTTL},
		Validation:          cfg.Validation,
		MaxRequestBodyBytes: cfg.Listeners.MaxRequestBodyBytes,
		XFFTrustedHops:      cfg.XFFTrustedHops,
		AllowSemicolons:     cfg.Listeners.AllowSemicolons,
		IdentityHeaders:     cfg.IdentityHeaders(),
		AccessLog:           cfg.AccessLog,
		Tracing:             cfg.Tracing,
		BackendTLS:          cfg.BackendTLS,
	}
	if cfg.Authz.Plugin.Module != "" {
		s.Authz.Plugin = &AuthzPlugin{AuthzPlugin: cfg.Authz.Plugin, Gateway: feed.Gateway(cfg)}
	}
	if cfg.Authz.DecisionCacheTTL.Duration > 0 {
		cfg.Revocation.Store, cfg.RateLimit.Store = "", ""
		b, err := json.Marshal(cfg)
		if err != nil {
			return g, fmt.Errorf("plan: gateway settings: %w", err)
		}
		sum := sha256.Sum256(b)
		s.Authz.Rules = hex.EncodeToString(sum[:8])
	}
	g.Settings = s
	p.mu.Lock()
	defer p.mu.Unlock()
	tmpls := make(map[string]parsedPath, len(p.last)) // both listeners' tables parse each path once
	for _, svc := range g.Services {
		for _, op := range svc.Operations {
			pp, ok := p.last[op.Path]
			if !ok {
				tmpl, err := ParseTemplate(op.Path)
				if err != nil {
					continue
				}
				pp = parsedPath{tmpl, tmpl.Shape()}
			}
			tmpls[op.Path] = pp
		}
	}
	p.last = tmpls
	fw := forwarding{identity: s.IdentityHeaders, lists: map[string][]string{}, checked: map[string]bool{}}
	g.Listeners = []Listener{
		{Name: ListenerPublic, Port: cfg.Listeners.Public, TLS: cfg.Listeners.TLS, Routes: g.routeTable(tmpls, false, s.Tokenless, &fw)},
		{Name: ListenerInternal, Port: cfg.Listeners.Internal, Routes: g.routeTable(tmpls, true, s.Tokenless, &fw)},
	}
	if len(fw.problems) > 0 {
		return g, fw.problems
	}
	return g, nil
}

// Problem is a refusal of the plan located in a spec file.
type Problem struct {
	File, Operation, Message string
	Line                     int
}

// Problems are the plan's refusals, as its error.
type Problems []Problem

func (ps Problems) Error() string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Operation, p.Message)
	}
	return strings.Join(msgs, "\n")
}

// forwarding computes each operation's Forward list once (operations with the same allowed
// headers share one), and checks the header rule of each list a tokenless route uses.
type forwarding struct {
	identity []string
	lists    map[string][]string // by the allowed headers, joined, and whether WebSocket
	checked  map[string]bool     // header rules checked, by the same key
	problems Problems
}

func (fw *forwarding) forward(svc *Service, op *Operation, tokenless bool) []string {
	key := strings.Join(op.AllowedHeaders, " ")
	if op.WebSocket != nil {
		key += " +websocket"
	}
	list, ok := fw.lists[key]
	if !ok {
		list = policy.Forwarded(op.AllowedHeaders, op.WebSocket != nil, fw.identity)
		fw.lists[key] = list
	}
	if tokenless && !fw.checked[key] {
		fw.checked[key] = true
		if n := programSize(HeaderRule(list)); n > MaxRegexProgram/2 {
			path := strings.TrimPrefix(op.Path, svc.BasePath) // as the spec file writes it
			if path == "" {
				path = "/"
			}
			fw.problems = append(fw.problems, Problem{File: svc.File, Line: op.Line, Operation: op.Method + " " + path,
				Message: fmt.Sprintf("the %d headers its anonymous requests forward make a header rule of %d RE2 instructions, past Envoy's %d: allow fewer headers (x-specgate.allowedHeaders)", len(list), n, MaxRegexProgram/2)})
		}
	}
	return list
}

// shape is every operation of one path shape that a listener serves.
type shape struct {
	parsedPath
	ops []shapeOp
}

type shapeOp struct {
	svc *Service
	op  *Operation
}

// routeTable is a listener's routes: per path shape, in matching order (concrete paths
// before templated ones, ComparePaths), its method routes between a CORS preflight and a 405
// with Allow; then a 404 for every other path. A path whose operations are all internal still
// gets a 404 of its own on the public listener, in its place in the order: otherwise a public
// template after it (/orders/{id} after /orders/admin) would carry the request to a backend.
func (g Gateway) routeTable(tmpls map[string]parsedPath, internal, tokenless bool, fw *forwarding) []Route {
	byShape := map[string]*shape{}
	for si := range g.Services {
		svc := &g.Services[si]
		for oi := range svc.Operations {
			op := &svc.Operations[oi]
			pp, ok := tmpls[op.Path]
			if !ok {
				continue // unparsable: Validate refuses the model
			}
			sh := byShape[pp.shape]
			if sh == nil {
				sh = &shape{parsedPath: pp}
				byShape[pp.shape] = sh
			}
			if op.Exposure == Internal && !internal {
				continue // on the public listener an internal operation is undeclared
			}
			sh.ops = append(sh.ops, shapeOp{svc, op})
		}
	}
	shapes := make([]*shape, 0, len(byShape))
	for _, sh := range byShape {
		shapes = append(shapes, sh)
	}
	slices.SortFunc(shapes, func(a, b *shape) int { return ComparePaths(a.tmpl, b.tmpl) })
	n := 1
	for _, sh := range shapes {
		n += 2 + 2*len(sh.ops) // a preflight, a 405, a tokenless route per operation at most
	}
	routes := make([]Route, 0, n)
	for _, sh := range shapes {
		routes = sh.appendRoutes(routes, tokenless, fw)
	}
	return append(routes, Route{Name: "specgate.404", Kind: RouteNotFound})
}

func (sh *shape) appendRoutes(routes []Route, tokenless bool, fw *forwarding) []Route {
	path, name := sh.tmpl.Raw, sh.shape
	if len(sh.ops) == 0 {
		return append(routes, Route{Name: "specgate.404:" + name, Kind: RouteNotFound, Path: path})
	}
	slices.SortStableFunc(sh.ops, func(a, b shapeOp) int { return cmp.Compare(a.op.Method, b.op.Method) })
	allow := make([]string, 0, len(sh.ops))
	for _, o := range sh.ops {
		allow = append(allow, o.op.Method)
	}
	owner := sh.ops[0].svc
	if owner.CORS != nil {
		routes = append(routes, Route{Name: owner.Name + ".preflight:" + name, Kind: RoutePreflight, Path: path,
			Service: owner.Name, Allow: allow})
	}
	for _, o := range sh.ops {
		op, svc := o.op, o.svc
		served := tokenless && op.servedTokenless()
		r := Route{Name: op.ID, Kind: RouteOperation, Path: path, Method: op.Method, Service: svc.Name,
			Operation: op.ID, Allow: allow, Forward: fw.forward(svc, op, served)}
		if served {
			t := r
			t.Kind = RouteTokenless
			routes = append(routes, t)
		}
		routes = append(routes, r)
	}
	return append(routes, Route{Name: owner.Name + ".405:" + name, Kind: RouteMethodNotAllowed, Path: path,
		Service: owner.Name, Allow: allow})
}

// servedTokenless reports whether the operation's requests without a token can be served
// without authz: anonymous, no rate limit keyed by a header (authz picks the header's value
// or the address per request; Envoy cannot), and no API key that a request may carry
// elsewhere than in Authorization (authz identifies its client).
func (o *Operation) servedTokenless() bool {
	return o.Security.Anonymous && !slices.ContainsFunc(o.RateLimits, func(rl RateLimit) bool {
		return rl.Key == KeyHeader || rl.Key == KeyHeaderClient
	}) && !slices.ContainsFunc(o.Security.AnyOf, func(r Requirement) bool { return r.APIKey != nil })
}

// validateListeners checks that every route refers to what the model holds.
func (g Gateway) validateListeners() error {
	if len(g.Listeners) == 0 {
		return nil
	}
	var errs []error
	ops := map[string]*Operation{}
	owners := map[string]string{} // operation ID → its service
	svcs := map[string]bool{}
	for si := range g.Services {
		svcs[g.Services[si].Name] = true
		for oi := range g.Services[si].Operations {
			op := &g.Services[si].Operations[oi]
			ops[op.ID], owners[op.ID] = op, g.Services[si].Name
		}
	}
	names := map[string]bool{}
	paths := map[string]bool{} // every route's path is an operation's (Operation.Validate parses those)
	for _, op := range ops {
		paths[op.Path] = true
	}
	for _, l := range g.Listeners {
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("listener %s: duplicate name", l.Name))
		}
		names[l.Name] = true
		if l.Name != ListenerPublic && l.Name != ListenerInternal {
			errs = append(errs, fmt.Errorf("listener %s: must be %s or %s", l.Name, ListenerPublic, ListenerInternal))
		}
		if l.Port == 0 {
			errs = append(errs, fmt.Errorf("listener %s: no port", l.Name))
		}
		if n := len(l.Routes); n == 0 || l.Routes[n-1].Kind != RouteNotFound || l.Routes[n-1].Path != "" {
			errs = append(errs, fmt.Errorf("listener %s: the last route must be the catch-all 404", l.Name))
		}
		for _, r := range l.Routes {
			err := r.validate(ops, svcs, paths)
			if op := ops[r.Operation]; err == nil && op != nil {
				switch {
				case owners[r.Operation] != r.Service:
					err = fmt.Errorf("operation %s belongs to service %s", r.Operation, owners[r.Operation])
				case op.Exposure == Internal && l.Name == ListenerPublic:
					err = fmt.Errorf("operation %s is internal", r.Operation)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %s: route %s: %w", l.Name, r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (r Route) validate(ops map[string]*Operation, svcs map[string]bool, paths map[string]bool) error {
	if r.Path != "" && !paths[r.Path] {
		return fmt.Errorf("path %s is no operation's", r.Path)
	}
	switch r.Kind {
	case RouteOperation, RouteTokenless:
		op := ops[r.Operation]
		if op == nil || !svcs[r.Service] || op.Method != r.Method || r.Path == "" {
			return fmt.Errorf("refers to no operation %s %s %s of service %s", r.Operation, r.Method, r.Path, r.Service)
		}
		if r.Kind == RouteTokenless && !op.servedTokenless() {
			return errors.New("tokenless, but its operation needs authz")
		}
		if len(r.Forward) == 0 || !slices.IsSorted(r.Forward) {
			return errors.New("forward must list the headers the backend gets, sorted (Plan computes it)")
		}
	case RoutePreflight, RouteMethodNotAllowed:
		if !svcs[r.Service] || r.Path == "" || len(r.Allow) == 0 {
			return fmt.Errorf("%s needs a path, an owner and the methods allowed", r.Kind)
		}
	case RouteNotFound:
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	return nil
}
