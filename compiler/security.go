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
