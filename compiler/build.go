package compiler

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

const extKey = "x-specgate"

// Build merges the specs into one gateway model. It collects every problem rather than
// stopping at the first; the model is usable only when the diagnostics hold no error.
func Build(specs []Spec) (ir.Gateway, Diagnostics) {
	var (
		gw       ir.Gateway
		diags    Diagnostics
		byName   = map[string]string{} // service name → file
		byRoute  = map[string]string{} // METHOD shape → "file: METHOD path"
		services []ir.Service
	)
	for _, spec := range specs {
		svc, ok := buildService(spec, &diags)
		if !ok {
			continue
		}
		if other, dup := byName[svc.Name]; dup {
			diags.errorf(spec.File, "", "service name %q is already used by %s", svc.Name, other)
			continue
		}
		byName[svc.Name] = spec.File
		for _, op := range svc.Operations {
			t, _ := ir.ParseTemplate(op.Path) // parsed without error in buildService
			key := op.Method + " " + t.Shape()
			where := fmt.Sprintf("%s: %s %s", spec.File, op.Method, op.Path)
			if other, dup := byRoute[key]; dup {
				diags.errorf(spec.File, op.Method+" "+op.Path, "same method and path as %s (parameter names do not matter)", other)
				continue
			}
			byRoute[key] = where
		}
		services = append(services, svc)
	}
	slices.SortFunc(services, func(a, b ir.Service) int { return cmp.Compare(a.Name, b.Name) })
	gw.Services = services
	if !diags.HasErrors() {
		if err := gw.Validate(); err != nil {
			diags.errorf("", "", "internal: built model is invalid: %v", err)
		}
	}
	return gw, diags
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
func strayExtensions(file, where string, ext map[string]any, diags *Diagnostics, known ...string) {
	for _, k := range slices.Sorted(maps.Keys(ext)) {
		if strings.HasPrefix(strings.ToLower(k), extKey) && !slices.Contains(known, k) {
			hint := ""
			if k == extKey {
				hint = ": put it on the document (service level) or on each operation"
			}
			diags.errorf(file, where, "%s is not read here%s", k, hint)
		}
	}
}

func buildService(spec Spec, diags *Diagnostics) (ir.Service, bool) {
	file, doc := spec.File, spec.Doc
	before := len(*diags)
	strayExtensions(file, "", doc.Extensions, diags, extKey)
	if doc.Components != nil {
		for _, name := range slices.Sorted(maps.Keys(doc.Components.SecuritySchemes)) {
			if ref := doc.Components.SecuritySchemes[name]; ref != nil && ref.Value != nil {
				strayExtensions(file, "securityScheme "+name, ref.Value.Extensions, diags, schemeIssuersKey)
			}
		}
	}
	var ext serviceExt
	raw, ok := doc.Extensions[extKey]
	if !ok {
		diags.errorf(file, "", "x-specgate is missing: a service needs at least a backend")
		return ir.Service{}, false
	}
	if err := decodeExt(raw, &ext); err != nil {
		diags.errorf(file, "", "%v", err)
		return ir.Service{}, false
	}
	svc := ir.Service{Name: ext.Service, File: file, BasePath: ext.BasePath, StripBasePath: ext.StripBasePath}
	if svc.Name == "" && doc.Info != nil {
		svc.Name = slug(doc.Info.Title)
	}
	if !ir.ValidServiceName(svc.Name) {
		diags.errorf(file, "", "service name %q: must be 1-63 of [a-z0-9-] (x-specgate.service or info.title)", svc.Name)
	}
	backend, err := parseBackend(ext.Backend)
	if err != nil {
		diags.errorf(file, "", "x-specgate.backend: %v", err)
	}
	svc.Backend = backend
	if svc.BasePath != "" {
		if t, err := ir.ParseTemplate(svc.BasePath); err != nil || t.Templated() || strings.HasSuffix(svc.BasePath, "/") {
			diags.errorf(file, "", "x-specgate.basePath %q: must be a literal path starting, and not ending, with /", svc.BasePath)
		}
	} else if svc.StripBasePath {
		diags.errorf(file, "", "x-specgate.stripBasePath needs a basePath")
	}
	if ext.CORS != nil {
		c := ir.CORS{AllowOrigins: ext.CORS.AllowOrigins, AllowHeaders: ext.CORS.AllowHeaders,
			ExposeHeaders: ext.CORS.ExposeHeaders, AllowCredentials: ext.CORS.AllowCredentials}
		if ext.CORS.MaxAge != "" {
			if c.MaxAge, err = time.ParseDuration(ext.CORS.MaxAge); err != nil {
				diags.errorf(file, "", "x-specgate.cors.maxAge: %v", err)
			}
		}
		if err := c.Validate(); err != nil {
			diags.errorf(file, "", "x-specgate.%v", err)
		}
		svc.CORS = &c
	}
	svcDefaults := resolved{exposure: ir.Public}
	resolveOverrides(file, "", ext.operationExt, &svcDefaults, diags)

	rootSecurity := doc.Security
	ids := map[string]string{}
	stats := map[string]string{} // ir.StatName of each route id → "METHOD path"
	if doc.Paths != nil {
		for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
			item := doc.Paths.Value(path)
			strayExtensions(file, path, item.Extensions, diags)
			gwPath := joinBase(svc.BasePath, path)
			if _, err := ir.ParseTemplate(gwPath); err != nil {
				diags.errorf(file, path, "%v", err)
				continue
			}
			ops := item.Operations()
			for _, method := range slices.Sorted(maps.Keys(ops)) {
				op := ops[method]
				where := method + " " + path
				strayExtensions(file, where, op.Extensions, diags, extKey)
				o := ir.Operation{Method: method, Path: gwPath}
				opID := op.OperationID
				if opID == "" {
					opID = strings.ToLower(method) + "-" + cmp.Or(slug(path), "root")
					diags.warnf(file, where, "no operationId; route id %s.%s is derived from method and path", svc.Name, opID)
				}
				o.ID = svc.Name + "." + opID
				if other, dup := ids[o.ID]; dup {
					diags.errorf(file, where, "route id %s is also used by %s", o.ID, other)
				}
				ids[o.ID] = where
				stat := ir.StatName(o.ID)
				if other, dup := stats[stat]; dup {
					diags.warnf(file, where, "route id %s has the same Envoy stat name %s as %s: their stats add up", o.ID, stat, other)
				}
				stats[stat] = where
				r := svcDefaults
				if rawOp, ok := op.Extensions[extKey]; ok {
					var oe operationExt
					if err := decodeExt(rawOp, &oe); err != nil {
						diags.errorf(file, where, "%v", err)
					} else {
						resolveOverrides(file, where, oe, &r, diags)
					}
				}
				o.Exposure, o.Timeout, o.AllowedHeaders, o.RateLimits = r.exposure, r.timeout, r.headers, r.limits
				reqs := rootSecurity
				if op.Security != nil {
					reqs = *op.Security
				}
				if reqs == nil {
					// OpenAPI reads no security as "open"; a gateway must not guess.
					diags.errorf(file, where, "no security requirement: declare one, or security: [] to make the operation anonymous")
				}
				o.Security = buildSecurity(file, where, doc, reqs, diags)
				svc.Operations = append(svc.Operations, o)
			}
		}
	}
	if len(svc.Operations) == 0 {
		diags.errorf(file, "", "no operations")
	}
	slices.SortFunc(svc.Operations, func(a, b ir.Operation) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return svc, !(*diags)[before:].HasErrors()
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
	if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return ir.Backend{}, fmt.Errorf("%q: must be scheme://host[:port] with no path, user or query", s)
	}
	b := ir.Backend{TLS: u.Scheme == "https", Host: u.Hostname(), Port: 80}
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

func resolveOverrides(file, where string, e operationExt, r *resolved, diags *Diagnostics) {
	if e.Exposure != nil {
		switch x := ir.Exposure(*e.Exposure); x {
		case ir.Public, ir.Internal:
			r.exposure = x
		default:
			diags.errorf(file, where, "x-specgate.exposure %q: must be public or internal", *e.Exposure)
		}
	}
	if e.Timeout != nil {
		d, err := time.ParseDuration(*e.Timeout)
		if err != nil || d <= 0 {
			diags.errorf(file, where, "x-specgate.timeout %q: must be a positive duration like 15s", *e.Timeout)
		}
		r.timeout = d
	}
	if e.AllowedHeaders != nil {
		r.headers = nil
		for _, h := range *e.AllowedHeaders {
			if !ir.ValidHeaderName(h) {
				diags.errorf(file, where, "x-specgate.allowedHeaders: %q is not a header name", h)
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
			}
			if l.Requests <= 0 {
				diags.errorf(file, where, "x-specgate.rateLimits[%d]: requests must be > 0, got %d", i, l.Requests)
				continue
			}
			if err := rl.Validate(); err != nil {
				diags.errorf(file, where, "x-specgate.rateLimits[%d]: %v (per: second|minute|hour|day; key: route|client|ip|header:<Name>)", i, err)
				continue
			}
			r.limits = append(r.limits, rl)
		}
	}
}

// buildSecurity turns OpenAPI's requirement list into the route's policy. A requirement names
// schemes with scopes; several schemes in one requirement must all hold (AND), so their scopes
// add up and their issuer pins intersect.
func buildSecurity(file, where string, doc *openapi3.T, reqs openapi3.SecurityRequirements, diags *Diagnostics) ir.Security {
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
				diags.errorf(file, where, "security: %v", err)
				ok = false
				continue
			}
			for _, s := range req[name] {
				if !policy.ValidScope(s) {
					diags.errorf(file, where, "security %s: scope %q must be a non-empty word", name, s)
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
			diags.errorf(file, where, "security: the schemes of one requirement pin issuers that have none in common")
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
		diags.errorf(file, where, "security: no usable requirement")
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
		return nil, fmt.Errorf("scheme %q is not defined in components.securitySchemes", name)
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
		return nil, fmt.Errorf("scheme %q has type %s, which specgate cannot enforce (use oauth2, openIdConnect or http bearer)", name, kind)
	}
	raw, ok := s.Extensions[schemeIssuersKey]
	if !ok {
		return nil, nil
	}
	var issuers []string
	if err := decodeExt(raw, &issuers); err != nil || len(issuers) == 0 {
		return nil, fmt.Errorf("scheme %q: x-specgate-issuers must be a non-empty list of issuer URLs", name)
	}
	return issuers, nil
}

// Compile loads dir and builds the model: the whole pipeline short of Envoy's types.
func Compile(dir string) (ir.Gateway, Diagnostics) {
	specs, diags := Load(dir)
	gw, more := Build(specs)
	return gw, append(diags, more...)
}
