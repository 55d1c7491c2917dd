package compiler

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
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
// name, how their path was written and where.
func samePolicy(a, b ir.Operation) bool {
	a.ID, a.Path, a.Line, b.ID, b.Path, b.Line = "", "", 0, "", "", 0
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
				strayExtensions(spec, schemePointer(name), "securityScheme "+name, ref.Value.Extensions, diags, schemeIssuersKey, schemePrefixKey)
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
	obj, err := extObject(raw, serviceKeys)
	if err == nil {
		svcOnly := maps.Clone(obj)
		for _, k := range overrideKeys {
			delete(svcOnly, k.name)
		}
		err = decodeExt(svcOnly, &ext)
	}
	if err != nil {
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
	backend.Line = extLine
	if bt := ext.BackendTLS; bt != nil {
		switch {
		case !backend.TLS:
			errAt(extLine, "", "x-specgate.backendTLS: the backend is not https")
		case bt.Profile == "":
			errAt(extLine, "", "x-specgate.backendTLS.profile: name one of gateway.yaml's backendTLS profiles")
		case bt.SAN != "" && !validSAN(bt.SAN):
			errAt(extLine, "", "x-specgate.backendTLS.san %q: must be a host name or an IP address", bt.SAN)
		}
		backend.TLSProfile, backend.SAN = bt.Profile, bt.SAN
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
	svc.CircuitBreaker = circuitBreaker(ext.CircuitBreaker, func(format string, a ...any) { errAt(extLine, "", format, a...) })
	svc.OutlierDetection = outlierDetection(ext.OutlierDetection, func(format string, a ...any) { errAt(extLine, "", format, a...) })
	// Every operation starts from the service's values of the operation keys.
	svcDefaults := ir.Operation{Exposure: ir.Public}
	applyOverrideKeys(obj, &svcDefaults, func(format string, a ...any) { errAt(extLine, "", format, a...) })

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
				o := svcDefaults
				o.Method, o.Path, o.Line = method, gwPath, line
				if rawOp, ok := op.Extensions[extKey]; ok {
					// At the x-specgate key: an overlay may have written it.
					extAt := spec.line(pointerAppend(opPtr, extKey), opPtr)
					if obj, err := extObject(rawOp, overrideKeyNames()); err != nil {
						errAt(extAt, where, "%v", err)
					} else {
						applyOverrideKeys(obj, &o, func(format string, a ...any) { errAt(extAt, where, format, a...) })
					}
				}
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
				if o.Validation != nil { // the service's pointer: each operation gets its own
					o.Validation = &ir.Validation{Path: path}
				}
				o.QueryToken = declaresQueryToken(item.Parameters) || declaresQueryToken(op.Parameters)
				reqs := rootSecurity
				if op.Security != nil {
					reqs = *op.Security
				}
				if reqs == nil {
					// OpenAPI reads no security as "open"; a gateway must not guess.
					errAt(line, where, "no security requirement: declare one, or security: [] to make the operation anonymous")
				}
				o.Security = buildSecurity(file, line, where, doc, reqs, schemes, diags)
				for _, r := range o.Security.AnyOf {
					for _, rl := range o.RateLimits {
						if k := r.APIKey; k != nil && k.In == "header" && (rl.Key == ir.KeyHeader || rl.Key == ir.KeyHeaderClient) && strings.EqualFold(rl.Header, k.Name) {
							errAt(line, where, "x-specgate.rateLimits: key %s:%s would count by the API key itself (and hand it to the rate-limit store); use key: client", rl.Key, rl.Header)
						}
					}
				}
				sources[o.ID] = opSource{where: where, line: line, tmpl: tmpl, shape: shape}
				svc.Operations = append(svc.Operations, o)
			}
		}
	}
	schemes.report(spec, diags)
	if slices.ContainsFunc(svc.Operations, func(o ir.Operation) bool { return o.Validation != nil }) {
		svc.Schema = spec.schema
		if svc.Schema == nil {
			errAt(extLine, "", "x-specgate.validate: %v", spec.schemaErr)
		}
		for i := range svc.Operations {
			if v := svc.Operations[i].Validation; v != nil && svc.Schema != nil {
				v.Schema = svc.Schema.Hash
			}
		}
	}
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

// declaresQueryToken reports whether params hold an access_token query parameter.
func declaresQueryToken(params openapi3.Parameters) bool {
	for _, p := range params {
		if p != nil && p.Value != nil && p.Value.In == openapi3.ParameterInQuery && strings.EqualFold(p.Value.Name, policy.QueryTokenParam) {
			return true
		}
	}
	return false
}

// validSAN reports whether s can be a certificate's DNS or IP subject alternative name.
func validSAN(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	for _, label := range strings.Split(strings.TrimPrefix(s, "*."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return len(s) <= 253
}
