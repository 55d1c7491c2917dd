package compiler

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

const extKey = "x-specgate"

// Build merges the specs into one gateway model. It collects every problem rather than
// stopping at the first; the model is usable only when the diagnostics hold no error.
func Build(specs []Spec) (ir.Gateway, Diagnostics) {
	type routeOwner struct {
		svc  string
		op   ir.Operation
		file string
		src  opSource
	}
	var (
		gw       ir.Gateway
		diags    Diagnostics
		byName   = map[string]string{} // service name → file
		byRoute  = map[string]routeOwner{}
		byShape  = map[string]*shapeOwner{}
		services []ir.Service
	)
	for _, spec := range specs {
		svc, sources, ok := spec.service(&diags)
		if !ok {
			continue
		}
		if other, dup := byName[svc.Name]; dup {
			diags.add(Error, spec.File, spec.line("/"+extKey, "/info"), "", "service name %q is already used by %s", svc.Name, other)
			continue
		}
		byName[svc.Name] = spec.File
		kept := make([]ir.Operation, 0, len(svc.Operations))
		for _, op := range svc.Operations {
			src := sources[op.ID]
			key := op.Method + " " + src.shape
			so, seen := byShape[src.shape]
			if !seen {
				so = &shapeOwner{tmpl: src.tmpl, file: spec.File, src: src, svc: svc.Name}
				byShape[src.shape] = so
			}
			so.ops = append(so.ops, op)
			other, dup := byRoute[key]
			if !dup {
				byRoute[key] = routeOwner{svc: svc.Name, op: op, file: spec.File, src: src}
				kept = append(kept, op)
				continue
			}
			first := fmt.Sprintf("%s:%d: %s", other.file, other.src.line, other.src.where)
			switch {
			case other.svc != svc.Name:
				diags.add(Error, spec.File, src.line, src.where, "a router cannot tell it from %s of service %s (same method and path shape; parameter names do not matter)", first, other.svc)
			case samePolicy(op, other.op):
				diags.add(Warning, spec.File, src.line, src.where, "a router cannot tell it from %s; their gateway policy is the same, so both are served by route %s", first, other.op.ID)
			default:
				diags.add(Error, spec.File, src.line, src.where, "a router cannot tell it from %s, and their gateway policy (security, exposure, limits, timeout or headers) differs: make the paths distinct or the policies equal", first)
			}
		}
		svc.Operations = kept
		services = append(services, svc)
	}
	ambiguousPaths(byShape, &diags)
	slices.SortFunc(services, func(a, b ir.Service) int { return cmp.Compare(a.Name, b.Name) })
	gw.Services = services
	if !diags.HasErrors() {
		if err := gw.Validate(); err != nil {
			diags.add(Error, "", 0, "", "internal: built model is invalid: %v", err)
		}
	}
	return gw, diags
}

// shapeOwner is a path shape: where it was first declared, and its operations.
type shapeOwner struct {
	tmpl ir.Template
	file string
	src  opSource
	svc  string
	ops  []ir.Operation
}

// ambiguousPaths refuses two path shapes that a request can match both of when neither is
// more specific (/a/{x}/c and /a/b/{y} both match /a/b/c) and their services or gateway
// policies differ. Routes try the more literal segment first, leftmost first (OpenAPI leaves
// such cases to the tooling), so /a/b/{y} serves it; with one policy on both that changes
// nothing (real APIs are full of /user/codespaces/{name}/stop beside
// /user/codespaces/secrets/{name}), but with two the order alone would decide which
// applies, and the gateway does not guess.
func ambiguousPaths(shapes map[string]*shapeOwner, diags *Diagnostics) {
	report := func(a, b *shapeOwner) {
		witness, ambiguous := ir.Overlap(a.tmpl, b.tmpl)
		if !ambiguous || a.svc == b.svc && onePolicy(append(slices.Clone(a.ops), b.ops...)) {
			return
		}
		diags.add(Error, b.file, b.src.line, b.src.where, "a request such as %s matches both this path and %s:%d: %s, neither is more specific, and their gateway policies differ: route order alone would decide which applies; make one path more specific or the policies equal",
			witness, a.file, a.src.line, a.src.where)
	}
	bySegments := map[int][]*shapeOwner{}
	for _, k := range slices.Sorted(maps.Keys(shapes)) {
		o := shapes[k]
		bySegments[len(o.tmpl.Segments)] = append(bySegments[len(o.tmpl.Segments)], o)
	}
	for _, n := range slices.Sorted(maps.Keys(bySegments)) {
		overlapCandidates(bySegments[n], 0, report)
	}
}

// overlapCandidates calls f for each pair of items (templates of one segment count, alike in
// their first i segments) that may overlap, without comparing every pair: at segment i, items
// with different text never overlap, so each text is a group of its own; items with a
// variable there are paired with all the others.
func overlapCandidates(items []*shapeOwner, i int, f func(a, b *shapeOwner)) {
	if len(items) < 2 {
		return
	}
	if i == len(items[0].tmpl.Segments) {
		for a := range items {
			for b := a + 1; b < len(items); b++ {
				f(items[a], items[b])
			}
		}
		return
	}
	groups := map[string][]*shapeOwner{}
	var vars []*shapeOwner
	for _, it := range items {
		seg := it.tmpl.Segments[i]
		if slices.ContainsFunc(seg.Parts, func(p ir.Part) bool { return p.Var != "" }) {
			vars = append(vars, it)
		} else if len(seg.Parts) == 0 {
			groups[""] = append(groups[""], it)
		} else {
			groups[seg.Parts[0].Literal] = append(groups[seg.Parts[0].Literal], it)
		}
	}
	for _, text := range slices.Sorted(maps.Keys(groups)) {
		g := groups[text]
		overlapCandidates(g, i+1, f)
		for _, v := range vars {
			for _, x := range g {
				f(x, v)
			}
		}
	}
	overlapCandidates(vars, i+1, f)
}

// onePolicy reports whether every operation has the same gateway policy, methods aside.
func onePolicy(ops []ir.Operation) bool {
	for _, op := range ops[1:] {
		op.Method = ops[0].Method
		if !samePolicy(op, ops[0]) {
			return false
		}
	}
	return true
}

// samePolicy reports whether two operations would be served alike: everything but their
// name and how their path was written.
func samePolicy(a, b ir.Operation) bool {
	a.ID, a.Path, b.ID, b.Path = "", "", "", ""
	return reflect.DeepEqual(a, b)
}

// builtService is a Spec's service as buildService made it: a Spec from the Loader's cache
// is built once, not on every rebuild of the control plane.
type builtService struct {
	once    sync.Once
	svc     ir.Service
	sources map[string]opSource
	diags   Diagnostics
	ok      bool
}

// service builds the spec's service (once, for a Spec that came from a Loader) and appends
// its diagnostics to diags. The returned service is the caller's to change.
func (spec Spec) service(diags *Diagnostics) (ir.Service, map[string]opSource, bool) {
	b := spec.built
	if b == nil {
		b = &builtService{}
	}
	b.once.Do(func() { b.svc, b.sources, b.ok = buildService(spec, &b.diags) })
	*diags = append(*diags, b.diags...)
	svc := b.svc
	svc.Operations = slices.Clone(svc.Operations)
	return svc, b.sources, b.ok
}

// opSource locates an operation in its file, for diagnostics that come after the build, and
// keeps its parsed path (built once per file, reused by every rebuild).
type opSource struct {
	where string // METHOD path, as written
	line  int
	tmpl  ir.Template
	shape string
}

var slugRe = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	s = strings.Trim(slugRe.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// strayExtensions reports x-specgate keys where specgate reads none (allowed: the keys in
// known): a setting that would be silently ignored, such as exposure: internal on a path
// item, must not publish what its author meant to hide.
func strayExtensions(spec Spec, ptr, where string, ext map[string]any, diags *Diagnostics, known ...string) {
	for _, k := range slices.Sorted(maps.Keys(ext)) {
		if strings.HasPrefix(strings.ToLower(k), extKey) && !slices.Contains(known, k) {
			hint := ""
			if k == extKey {
				hint = ": put it on the document (service level) or on each operation"
			}
			diags.add(Error, spec.File, spec.line(pointerAppend(ptr, k), ptr), where, "%s is not read here%s", k, hint)
		}
	}
}

func buildService(spec Spec, diags *Diagnostics) (ir.Service, map[string]opSource, bool) {
	file, doc := spec.File, spec.Doc
	before := len(*diags)
	errAt := func(line int, where, format string, a ...any) { diags.add(Error, file, line, where, format, a...) }
	strayExtensions(spec, "", "", doc.Extensions, diags, extKey)
	if doc.Components != nil {
		for _, name := range slices.Sorted(maps.Keys(doc.Components.SecuritySchemes)) {
			if ref := doc.Components.SecuritySchemes[name]; ref != nil && ref.Value != nil {
				strayExtensions(spec, schemePointer(name), "securityScheme "+name, ref.Value.Extensions, diags, schemeIssuersKey)
			}
		}
	}
	var ext serviceExt
	raw, ok := doc.Extensions[extKey]
	extLine := spec.line("/" + extKey)
	if !ok {
		errAt(0, "", "x-specgate is missing: a service needs at least a backend")
		return ir.Service{}, nil, false
	}
	if err := decodeExt(raw, &ext); err != nil {
		errAt(extLine, "", "%v", err)
		return ir.Service{}, nil, false
	}
	svc := ir.Service{Name: ext.Service, File: file, BasePath: ext.BasePath, StripBasePath: ext.StripBasePath}
	if svc.Name == "" && doc.Info != nil {
		svc.Name = slug(doc.Info.Title)
	}
	if !ir.ValidServiceName(svc.Name) {
		errAt(extLine, "", "service name %q: must be 1-63 of [a-z0-9-] (x-specgate.service or info.title)", svc.Name)
	}
	backend, err := parseBackend(ext.Backend)
	if err != nil {
		errAt(extLine, "", "x-specgate.backend: %v", err)
	}
	svc.Backend = backend
	if svc.BasePath != "" {
		if t, err := ir.ParseTemplate(svc.BasePath); err != nil || t.Templated() || strings.HasSuffix(svc.BasePath, "/") {
			errAt(extLine, "", "x-specgate.basePath %q: must be a literal path starting, and not ending, with /", svc.BasePath)
		}
	} else if svc.StripBasePath {
		errAt(extLine, "", "x-specgate.stripBasePath needs a basePath")
	} else if p := serverPath(doc); p != "" {
		diags.add(Warning, file, spec.line("/servers"), "", "servers[0].url has the path %s but x-specgate.basePath is not set: the gateway serves the paths as written (/a, not %s/a); set basePath: %s (and stripBasePath: true if the backend does not expect it)", p, p, p)
	}
	if ext.CORS != nil {
		c := ir.CORS{AllowOrigins: ext.CORS.AllowOrigins, AllowHeaders: ext.CORS.AllowHeaders,
			ExposeHeaders: ext.CORS.ExposeHeaders, AllowCredentials: ext.CORS.AllowCredentials}
		if ext.CORS.MaxAge != "" {
			if c.MaxAge, err = time.ParseDuration(ext.CORS.MaxAge); err != nil {
				errAt(extLine, "", "x-specgate.cors.maxAge: %v", err)
			}
		}
		if err := c.Validate(); err != nil {
			errAt(extLine, "", "x-specgate.%v", err)
		}
		svc.CORS = &c
	}
	svcDefaults := resolved{exposure: ir.Public}
	resolveOverrides(file, extLine, "", ext.operationExt, &svcDefaults, diags)

	rootSecurity := doc.Security
	ids := map[string]string{}
	stats := map[string]string{} // ir.StatName of each route id → "METHOD path"
	sources := map[string]opSource{}
	schemes := schemeUses{}
	if doc.Paths != nil {
		for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
			item := doc.Paths.Value(path)
			pathPtr := pointerAppend("/paths", path)
			strayExtensions(spec, pathPtr, path, item.Extensions, diags)
			// A query or fragment in a path key documents a variant of a path (/messages?beta=true):
			// routes match the path alone, so the variant is routed as that path.
			routed := path
			if i := strings.IndexAny(path, "?#"); i > 0 {
				routed = path[:i]
			}
			gwPath := joinBase(svc.BasePath, routed)
			tmpl, err := ir.ParseTemplate(gwPath)
			if err != nil {
				errAt(spec.line(pathPtr), path, "%v", err)
				continue
			}
			shape := tmpl.Shape()
			ops := item.Operations()
			for _, method := range slices.Sorted(maps.Keys(ops)) {
				op := ops[method]
				where := method + " " + path
				opPtr := pointerAppend(pathPtr, strings.ToLower(method))
				if _, fixed := operationKeys[strings.ToLower(method)]; !fixed || spec.line(opPtr) == 0 {
					opPtr = pointerAppend(pathPtr+"/additionalOperations", method)
				}
				line := spec.line(opPtr, pathPtr)
				if !ir.ValidMethod(method) {
					errAt(line, where, "method %q cannot be routed: Envoy parses GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, QUERY and the WebDAV methods, in upper case; CONNECT is not served", method)
					continue
				}
				strayExtensions(spec, opPtr, where, op.Extensions, diags, extKey)
				o := ir.Operation{Method: method, Path: gwPath}
				opID := op.OperationID
				if opID == "" {
					opID = strings.ToLower(method) + "-" + cmp.Or(slug(routed), "root")
					diags.add(Warning, file, line, where, "no operationId; route id %s.%s is derived from method and path", svc.Name, opID)
				}
				o.ID = svc.Name + "." + opID
				if other, dup := ids[o.ID]; dup {
					errAt(line, where, "route id %s is also used by %s", o.ID, other)
				}
				ids[o.ID] = where
				stat := ir.StatName(o.ID)
				if other, dup := stats[stat]; dup {
					diags.add(Warning, file, line, where, "route id %s has the same Envoy stat name %s as %s: their stats add up", o.ID, stat, other)
				}
				stats[stat] = where
				r := svcDefaults
				if rawOp, ok := op.Extensions[extKey]; ok {
					var oe operationExt
					if err := decodeExt(rawOp, &oe); err != nil {
						errAt(line, where, "%v", err)
					} else {
						resolveOverrides(file, line, where, oe, &r, diags)
					}
				}
				o.Exposure, o.Timeout, o.AllowedHeaders, o.RateLimits = r.exposure, r.timeout, r.headers, r.limits
				reqs := rootSecurity
				if op.Security != nil {
					reqs = *op.Security
				}
				if reqs == nil {
					// OpenAPI reads no security as "open"; a gateway must not guess.
					errAt(line, where, "no security requirement: declare one, or security: [] to make the operation anonymous")
				}
				o.Security = buildSecurity(file, line, where, doc, reqs, schemes, diags)
				sources[o.ID] = opSource{where: where, line: line, tmpl: tmpl, shape: shape}
				svc.Operations = append(svc.Operations, o)
			}
		}
	}
	schemes.report(spec, diags)
	if len(svc.Operations) == 0 && !(*diags)[before:].HasErrors() {
		errAt(spec.line("/paths"), "", "no operations")
	}
	slices.SortFunc(svc.Operations, func(a, b ir.Operation) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method), cmp.Compare(sources[a.ID].where, sources[b.ID].where))
	})
	return svc, sources, !(*diags)[before:].HasErrors()
}

// serverPath is the path of servers[0].url ("" when it has none), the prefix the document's
// paths are written under.
func serverPath(doc *openapi3.T) string {
	if len(doc.Servers) == 0 || doc.Servers[0] == nil {
		return ""
	}
	u, err := url.Parse(doc.Servers[0].URL)
	if err != nil || strings.Contains(u.Path, "{") {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

func schemePointer(name string) string { return pointerAppend("/components/securitySchemes", name) }

// schemeUses gathers the operations that name a scheme specgate cannot use, so that one line
// per scheme says it, not one per operation.
type schemeUses map[string]*schemeUse

type schemeUse struct {
	problem string
	ops     []string
	line    int // of the first operation, when the scheme has no definition to point at
}

func (u schemeUses) note(name, problem, where string, line int) {
	su := u[name]
	if su == nil {
		su = &schemeUse{problem: problem, line: line}
		u[name] = su
	}
	su.ops = append(su.ops, where)
}

func (u schemeUses) report(spec Spec, diags *Diagnostics) {
	for _, name := range slices.Sorted(maps.Keys(u)) {
		su := u[name]
		list := strings.Join(su.ops[:min(3, len(su.ops))], ", ")
		if len(su.ops) > 3 {
			list += ", …"
		}
		ops := "1 operation"
		if len(su.ops) > 1 {
			ops = fmt.Sprintf("%d operations", len(su.ops))
		}
		line := spec.line(schemePointer(name))
		if line == 0 {
			line = su.line
		}
		diags.add(Error, spec.File, line, "", "security scheme %q is used by %s (%s): %s", name, ops, list, su.problem)
	}
}

// joinBase puts basePath in front of an OpenAPI path; "/" under /orders is /orders itself.
func joinBase(base, path string) string {
	if base != "" && path == "/" {
		return base
	}
	return base + path
}

func parseBackend(s string) (ir.Backend, error) {
	if s == "" {
		return ir.Backend{}, fmt.Errorf("missing (http://host:port or https://host:port)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return ir.Backend{}, fmt.Errorf("%q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ir.Backend{}, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.RawPath != "" {
		return ir.Backend{}, fmt.Errorf("%q: must be scheme://host[:port][/path] with no user, query or escaped path", s)
	}
	b := ir.Backend{TLS: u.Scheme == "https", Host: u.Hostname(), Port: 80, PathPrefix: strings.TrimRight(u.Path, "/")}
	if t, err := ir.ParseTemplate(cmp.Or(b.PathPrefix, "/")); err != nil || t.Templated() {
		return ir.Backend{}, fmt.Errorf("%q: the path must be literal, without // or {}", s)
	}
	if b.TLS {
		b.Port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return ir.Backend{}, fmt.Errorf("%q: invalid port", s)
		}
		b.Port = uint32(n)
	}
	if strings.ContainsAny(b.Host, "_ ") && net.ParseIP(b.Host) == nil {
		return ir.Backend{}, fmt.Errorf("%q: invalid host", s)
	}
	return b, nil
}

// resolved is the effective value of every overridable key.
type resolved struct {
	exposure ir.Exposure
	timeout  time.Duration
	headers  []string
	limits   []ir.RateLimit
}

func resolveOverrides(file string, line int, where string, e operationExt, r *resolved, diags *Diagnostics) {
	errorf := func(format string, a ...any) { diags.add(Error, file, line, where, format, a...) }
	if e.Exposure != nil {
		switch x := ir.Exposure(*e.Exposure); x {
		case ir.Public, ir.Internal:
			r.exposure = x
		default:
			errorf("x-specgate.exposure %q: must be public or internal", *e.Exposure)
		}
	}
	if e.Timeout != nil {
		d, err := time.ParseDuration(*e.Timeout)
		if err != nil || d <= 0 {
			errorf("x-specgate.timeout %q: must be a positive duration like 15s", *e.Timeout)
		}
		r.timeout = d
	}
	if e.AllowedHeaders != nil {
		r.headers = nil
		for _, h := range *e.AllowedHeaders {
			if !ir.ValidHeaderName(h) {
				errorf("x-specgate.allowedHeaders: %q is not a header name", h)
				continue
			}
			if strings.HasPrefix(strings.ToLower(h), "x-specgate-") {
				errorf("x-specgate.allowedHeaders: %q: X-Specgate-* headers are the gateway's own", h)
				continue
			}
			r.headers = append(r.headers, strings.ToLower(h))
		}
		slices.Sort(r.headers)
		r.headers = slices.Compact(r.headers)
	}
	if e.RateLimits != nil {
		r.limits = nil
		for i, l := range *e.RateLimits {
			rl := ir.RateLimit{Per: ir.Unit(l.Per), Key: ir.KeyKind(l.Key)}
			if l.Requests > 0 && l.Requests <= 1<<31 {
				rl.Requests = uint32(l.Requests)
			}
			if name, ok := strings.CutPrefix(l.Key, "header:"); ok {
				rl.Key, rl.Header = ir.KeyHeader, name
			} else if name, ok := strings.CutPrefix(l.Key, "header+client:"); ok {
				rl.Key, rl.Header = ir.KeyHeaderClient, name
			}
			if l.Requests <= 0 {
				errorf("x-specgate.rateLimits[%d]: requests must be > 0, got %d", i, l.Requests)
				continue
			}
			if err := rl.Validate(); err != nil {
				errorf("x-specgate.rateLimits[%d]: %v (per: second|minute|hour|day; key: route|client|ip|header:<Name>|header+client:<Name>)", i, err)
				continue
			}
			r.limits = append(r.limits, rl)
		}
	}
}

// buildSecurity turns OpenAPI's requirement list into the route's policy. A requirement names
// schemes with scopes; several schemes in one requirement must all hold (AND), so their scopes
// add up and their issuer pins intersect.
func buildSecurity(file string, line int, where string, doc *openapi3.T, reqs openapi3.SecurityRequirements, schemes schemeUses, diags *Diagnostics) ir.Security {
	errorf := func(format string, a ...any) { diags.add(Error, file, line, where, format, a...) }
	var sec ir.Security
	failed := false
	if len(reqs) == 0 {
		sec.Anonymous = true
		return sec
	}
	for _, req := range reqs {
		if len(req) == 0 {
			sec.Anonymous = true
			continue
		}
		var (
			out    ir.Requirement
			pinned bool
			ok     = true
		)
		names := make([]string, 0, len(req))
		for n := range req {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, name := range names {
			issuers, err := schemeIssuers(doc, name)
			if err != nil {
				schemes.note(name, err.Error(), where, line)
				ok = false
				continue
			}
			for _, s := range req[name] {
				if !policy.ValidScope(s) {
					errorf("security %s: scope %q must be a non-empty word", name, s)
					ok = false
				}
			}
			out.Scopes = append(out.Scopes, req[name]...)
			if issuers != nil {
				if !pinned {
					out.Issuers, pinned = issuers, true
				} else {
					out.Issuers = slices.DeleteFunc(out.Issuers, func(i string) bool { return !slices.Contains(issuers, i) })
				}
			}
		}
		if pinned && len(out.Issuers) == 0 {
			errorf("security: the schemes of one requirement pin issuers that have none in common")
			ok = false
		}
		if !ok {
			failed = true
			continue
		}
		slices.Sort(out.Scopes)
		out.Scopes = slices.Compact(out.Scopes)
		slices.Sort(out.Issuers)
		sec.AnyOf = append(sec.AnyOf, out)
	}
	if !sec.Anonymous && len(sec.AnyOf) == 0 && !failed {
		errorf("security: no usable requirement")
	}
	return sec
}

// schemeIssuersKey pins the issuers a security scheme accepts.
const schemeIssuersKey = "x-specgate-issuers"

// schemeIssuers checks that a named scheme means "a JWT from a trusted issuer" and returns
// its x-specgate-issuers pin (nil: any configured issuer).
func schemeIssuers(doc *openapi3.T, name string) ([]string, error) {
	var ref *openapi3.SecuritySchemeRef
	if doc.Components != nil {
		ref = doc.Components.SecuritySchemes[name]
	}
	if ref == nil || ref.Value == nil {
		return nil, errors.New("it is not defined in components.securitySchemes")
	}
	s := ref.Value
	switch {
	case s.Type == "oauth2", s.Type == "openIdConnect":
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
	default:
		kind := s.Type
		if s.Type == "http" {
			kind = "http " + s.Scheme
		}
		return nil, fmt.Errorf("its type %s is not one specgate can enforce (use oauth2, openIdConnect or http bearer)", kind)
	}
	raw, ok := s.Extensions[schemeIssuersKey]
	if !ok {
		return nil, nil
	}
	var issuers []string
	if err := decodeExt(raw, &issuers); err != nil || len(issuers) == 0 {
		return nil, errors.New("x-specgate-issuers must be a non-empty list of issuer URLs")
	}
	return issuers, nil
}

// Options shape a compilation. The zero value caches nothing, applies no backend policy and
// checks path ownership with no shared prefixes.
type Options struct {
	// Loader keeps each file's parse by content between compilations (the control plane's).
	Loader *Loader
	// Policy is what gateway.yaml says about specs.
	Policy Policy
	// Strict adds the warnings of a whole-document OpenAPI validation (lint --strict).
	Strict bool
}

// CompileFiles is the one path from spec files (name → content, as ReadDir returns them) to
// the model: load, build, the gateway's policy; the diagnostics sorted. The control plane's
// every push and reload, specgate lint/compile/push, the golden tests and the benchmarks
// compile through it, so that none of them accepts what another refuses.
func CompileFiles(dir string, files map[string][]byte, o Options) (ir.Gateway, Diagnostics) {
	if o.Loader == nil {
		o.Loader = NewLoader()
	}
	specs, diags := o.Loader.LoadFiles(dir, files)
	gw, more := Build(specs)
	diags = append(diags, more...)
	if o.Strict {
		diags = append(diags, Strict(dir, files, specs)...)
	}
	diags = append(diags, o.Policy.Check(gw)...)
	diags.Sort()
	return gw, diags
}

// Compile is CompileFiles on the spec files of dir, read now.
func Compile(dir string, o Options) (ir.Gateway, Diagnostics) {
	files, err := ReadDir(dir)
	if err != nil {
		return ir.Gateway{}, Diagnostics{{Severity: Error, File: dir, Message: err.Error()}}
	}
	return CompileFiles(dir, files, o)
}

// Policy is what gateway.yaml says about specs, which the specs themselves do not carry:
// where backends may point, and which basePaths services may share. compile, lint and every
// push and reload of the control plane check it.
type Policy struct {
	Backend        func(host string) error // gateway.yaml backends; nil allows any host
	SharedPrefixes []string
}

// Check applies the policy to a built gateway.
func (p Policy) Check(gw ir.Gateway) Diagnostics {
	var diags Diagnostics
	if p.Backend != nil {
		for _, s := range gw.Services {
			if err := p.Backend(s.Backend.Host); err != nil {
				diags.errorf(s.File, "", "x-specgate.backend: %v", err)
			}
		}
	}
	return append(diags, checkOwnership(gw, p.SharedPrefixes)...)
}
