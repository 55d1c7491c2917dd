package compiler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

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
			issuers, key, err := schemeOf(doc, name)
			if err != nil {
				schemes.note(name, err.Error(), where, line)
				ok = false
				continue
			}
			if key != nil {
				if len(names) > 1 {
					errorf("security: the apiKey scheme %s cannot be combined with other schemes in one requirement; list them as alternatives ([{%s: []}, {…}])", name, name)
					ok = false
					continue
				}
				out.APIKey = key
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
	// A key in Authorization without a prefix would take every bearer token for a key.
	tokens := slices.ContainsFunc(sec.AnyOf, func(r ir.Requirement) bool { return r.APIKey == nil })
	for _, r := range sec.AnyOf {
		if k := r.APIKey; k != nil && tokens && k.In == "header" && strings.EqualFold(k.Name, "Authorization") && k.Prefix == "" {
			errorf("security: the apiKey scheme %s reads Authorization without x-specgate-prefix beside a token requirement: every bearer token would be taken for a key; give it a prefix (\"Bot \")", k.Scheme)
		}
	}
	return sec
}

// schemeIssuersKey pins the issuers a security scheme accepts; schemePrefixKey is what an
// apiKey scheme's value starts with before the key (Discord's "Bot ").
const (
	schemeIssuersKey = "x-specgate-issuers"
	schemePrefixKey  = "x-specgate-prefix"
)

// schemeOf checks that a named scheme is one specgate enforces: "a JWT from a trusted
// issuer", with its x-specgate-issuers pin (nil: any configured issuer), or an API key, with
// where requests carry it.
func schemeOf(doc *openapi3.T, name string) ([]string, *policy.APIKey, error) {
	var ref *openapi3.SecuritySchemeRef
	if doc.Components != nil {
		ref = doc.Components.SecuritySchemes[name]
	}
	if ref == nil || ref.Value == nil {
		return nil, nil, errors.New("it is not defined in components.securitySchemes")
	}
	s := ref.Value
	switch {
	case s.Type == "oauth2", s.Type == "openIdConnect":
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
	case s.Type == "apiKey":
		key, err := apiKeyScheme(name, s)
		return nil, key, err
	default:
		kind := s.Type
		if s.Type == "http" {
			kind = "http " + s.Scheme
		}
		return nil, nil, fmt.Errorf("its type %s is not one specgate can enforce (use oauth2, openIdConnect, http bearer or apiKey)", kind)
	}
	if _, ok := s.Extensions[schemePrefixKey]; ok {
		return nil, nil, fmt.Errorf("%s is for apiKey schemes", schemePrefixKey)
	}
	raw, ok := s.Extensions[schemeIssuersKey]
	if !ok {
		return nil, nil, nil
	}
	var issuers []string
	if err := decodeExt(raw, &issuers); err != nil || len(issuers) == 0 {
		return nil, nil, errors.New("x-specgate-issuers must be a non-empty list of issuer URLs")
	}
	return issuers, nil, nil
}

// apiKeyScheme reads an apiKey scheme: in header, query or cookie, a name, and the optional
// x-specgate-prefix.
func apiKeyScheme(name string, s *openapi3.SecurityScheme) (*policy.APIKey, error) {
	key := &policy.APIKey{Scheme: name, In: s.In, Name: s.Name}
	switch {
	case s.In != "header" && s.In != "query" && s.In != "cookie":
		return nil, fmt.Errorf("apiKey in %q: must be header, query or cookie", s.In)
	case s.Name == "" || s.In == "header" && !ir.ValidHeaderName(s.Name):
		return nil, fmt.Errorf("apiKey name %q: must be a header, query parameter or cookie name", s.Name)
	case s.In == "header" && strings.HasPrefix(strings.ToLower(s.Name), "x-specgate-"):
		return nil, fmt.Errorf("apiKey name %q: X-Specgate-* headers are the gateway's own", s.Name)
	case s.In == "header" && slices.Contains(policy.BaseHeaders, strings.ToLower(s.Name)):
		return nil, fmt.Errorf("apiKey name %q: a header every backend gets; a key needs a header of its own", s.Name)
	}
	if _, pinned := s.Extensions[schemeIssuersKey]; pinned {
		return nil, fmt.Errorf("%s is for token schemes: an API key has no issuer", schemeIssuersKey)
	}
	if raw, ok := s.Extensions[schemePrefixKey]; ok {
		p, isString := raw.(string)
		if !isString || p == "" || len(p) > 32 || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return nil, fmt.Errorf("%s must be a short printable string, such as \"Bot \"", schemePrefixKey)
		}
		key.Prefix = p
	}
	return key, nil
}
