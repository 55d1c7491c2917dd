package compiler

import (
	"slices"
	"strings"

	"github.com/specgate/specgate/compiler/ir"
)

// CheckOwnership keeps each service to its own prefix: no operation of one service may match
// a path under another service's basePath, and no basePath may lie under another's, unless
// that basePath is one of shared (gateway.yaml sharedPrefixes). Without it a new service's
// GET /orders/mine would win over orders' /orders/{id} and, with Authorization allowed,
// receive orders' bearer tokens. compile, lint and every push apply it.
func CheckOwnership(gw ir.Gateway, shared []string) Diagnostics {
	var diags Diagnostics
	for _, owner := range gw.Services {
		base := owner.BasePath
		if base == "" || slices.Contains(shared, base) {
			continue
		}
		prefix, _ := ir.ParseTemplate(base)
		for _, other := range gw.Services {
			if other.Name == owner.Name || other.BasePath != "" && strings.HasPrefix(base, other.BasePath+"/") {
				continue // other holds owner's prefix: nesting is judged on owner's basePath
			}
			if other.BasePath == base || strings.HasPrefix(other.BasePath, base+"/") {
				diags.errorf(other.File, "", "x-specgate.basePath %s lies under %s, the basePath of service %s (%s): list %s in gateway.yaml sharedPrefixes to let services share it",
					other.BasePath, base, owner.Name, owner.File, base)
				continue
			}
			for _, op := range other.Operations {
				t, err := ir.ParseTemplate(op.Path)
				if err == nil && under(t, prefix) {
					diags.errorf(other.File, op.Method+" "+op.Path, "can match paths under %s, the basePath of service %s (%s): a service serves only its own paths; list %s in gateway.yaml sharedPrefixes to share it",
						base, owner.Name, owner.File, base)
				}
			}
		}
	}
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
