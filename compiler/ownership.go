package compiler

import (
	"slices"
	"strings"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/config"
)

// located is an operation with its service and parsed path.
type located struct {
	svc  *ir.Service
	op   ir.Operation
	tmpl ir.Template
}

// locate is every operation of gw whose path parses (Build reports the others).
func locate(gw ir.Gateway) []located {
	var out []located
	for i := range gw.Services {
		s := &gw.Services[i]
		for _, op := range s.Operations {
			if t, err := ir.ParseTemplate(op.Path); err == nil {
				out = append(out, located{s, op, t})
			}
		}
	}
	return out
}

// checkOwnership keeps each service to its own prefix: no operation of one service may match
// a path under another service's basePath, and no basePath may lie under another's, unless
// that basePath is one of shared (gateway.yaml sharedPrefixes). Without it a new service's
// GET /orders/mine would win over orders' /orders/{id} and, with Authorization allowed,
// receive orders' bearer tokens.
func checkOwnership(gw ir.Gateway, shared []string) Diagnostics {
	// Operations by their first segment's text ("" when it has a variable): an operation can
	// only lie under /orders if its first segment is orders or a variable.
	byFirst := map[string][]located{}
	for _, l := range locate(gw) {
		if len(l.tmpl.Segments) == 0 {
			continue
		}
		first := ""
		if !slices.ContainsFunc(l.tmpl.Segments[0].Parts, func(p ir.Part) bool { return p.Var != "" }) {
			first = l.tmpl.Segments[0].Parts[0].Literal
		}
		byFirst[first] = append(byFirst[first], l)
	}
	var diags Diagnostics
	for _, owner := range gw.Services {
		base := owner.BasePath
		if base == "" || slices.Contains(shared, base) {
			continue
		}
		prefix, _ := ir.ParseTemplate(base)
		nested := map[string]bool{} // services reported for a nested basePath
		for _, other := range gw.Services {
			if other.Name != owner.Name && (other.BasePath == base || strings.HasPrefix(other.BasePath, base+"/")) {
				nested[other.Name] = true
				diags.errorf(other.File, "", "x-specgate.basePath %s lies under %s, the basePath of service %s (%s): list %s in gateway.yaml sharedPrefixes to let services share it",
					other.BasePath, base, owner.Name, owner.File, base)
			}
		}
		first := prefix.Segments[0].Parts[0].Literal
		for _, candidates := range [][]located{byFirst[first], byFirst[""]} {
			for _, l := range candidates {
				other := l.svc
				// other holding owner's prefix (nesting is judged on owner's basePath), and the
				// services already reported for nesting, are not reported per operation.
				outer := other.BasePath != "" && strings.HasPrefix(base, other.BasePath+"/")
				if other.Name == owner.Name || nested[other.Name] || outer && !slices.Contains(shared, other.BasePath) {
					continue
				}
				// At a shared prefix, the outer service's templates may match the nested
				// basePath (the nested service's literal paths are ordered first), but a
				// concrete path inside it would be ordered before the nested service's own
				// templates and take its requests.
				if outer && !literalUnder(l.tmpl, prefix) {
					continue
				}
				if under(l.tmpl, prefix) {
					diags.errorf(other.File, l.op.Method+" "+l.op.Path, "can match paths under %s, the basePath of service %s (%s): a service serves only its own paths; list %s in gateway.yaml sharedPrefixes to share it",
						base, owner.Name, owner.File, base)
				}
			}
		}
	}
	diags.Sort()
	return diags
}

// under reports whether t can match prefix itself or a path below it: each of prefix's
// literal segments is met by the same literal or by a segment with a variable.
func under(t, prefix ir.Template) bool {
	if len(t.Segments) < len(prefix.Segments) {
		return false
	}
	for i, p := range prefix.Segments {
		s := t.Segments[i]
		if !slices.ContainsFunc(s.Parts, func(x ir.Part) bool { return x.Var != "" }) && !slices.Equal(s.Parts, p.Parts) {
			return false
		}
	}
	return true
}

// literalUnder reports whether t spells out prefix's segments literally (no variable in them).
func literalUnder(t, prefix ir.Template) bool {
	if len(t.Segments) < len(prefix.Segments) {
		return false
	}
	for i := range prefix.Segments {
		if slices.ContainsFunc(t.Segments[i].Parts, func(p ir.Part) bool { return p.Var != "" }) {
			return false
		}
	}
	return true
}

// checkRootShadows keeps services without a basePath from taking each other's requests: an
// operation of one service whose path is more specific than a template of another and that
// the template also matches (promotions' /orders/special beside orders' /orders/{id}) is
// ordered first and takes those requests, whatever their method (its path answers 405 to the
// others). That is an error naming both, unless gateway.yaml pathOverrides allows the pair.
// Services with a basePath are kept to it by checkOwnership.
func checkRootShadows(gw ir.Gateway, overrides []config.PathOverride) Diagnostics {
	bySegments := map[int][]located{}
	for _, l := range locate(gw) {
		bySegments[len(l.tmpl.Segments)] = append(bySegments[len(l.tmpl.Segments)], l)
	}
	allowed := func(svc, path, over string) bool {
		return slices.ContainsFunc(overrides, func(o config.PathOverride) bool {
			return o.Service == svc && o.Path == path && o.Over == over
		})
	}
	var diags Diagnostics
	reported := map[[3]string]bool{} // service, path, shadowed service
	for _, group := range bySegments {
		for _, a := range group {
			if a.svc.BasePath != "" || !a.tmpl.Templated() {
				continue
			}
			for _, b := range group {
				key := [3]string{b.svc.Name, b.op.Path, a.svc.Name}
				// The same shape in two services is refused already (a router cannot tell them).
				if b.svc.Name == a.svc.Name || reported[key] || b.tmpl.Shape() == a.tmpl.Shape() || ir.ComparePaths(b.tmpl, a.tmpl) >= 0 ||
					!a.tmpl.Matches(b.tmpl.Sample()) || allowed(b.svc.Name, b.op.Path, a.svc.Name) {
					continue
				}
				reported[key] = true
				diags.errorf(b.svc.File, b.op.Method+" "+b.op.Path, "is ordered before %s %s of service %s (%s), which also matches %s, and would take its requests: allow the pair in gateway.yaml pathOverrides ({path: %s, service: %s, over: %s}) if that is meant",
					a.op.Method, a.op.Path, a.svc.Name, a.svc.File, b.op.Path, b.op.Path, b.svc.Name, a.svc.Name)
			}
		}
	}
	diags.Sort()
	return diags
}
