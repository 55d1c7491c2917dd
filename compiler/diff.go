package compiler

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/specgate/specgate/compiler/ir"
)

// Change is one difference between two gateway models that a reviewer cares about.
type Change struct {
	// Risk marks changes that widen access: a route added or made public, a scope lost, an
	// operation made anonymous, a rate limit loosened or removed, a backend or origin changed.
	Risk      bool   `json:"risk"`
	Service   string `json:"service"`
	Operation string `json:"operation,omitempty"` // METHOD PATH
	Message   string `json:"message"`
}

func (c Change) String() string {
	mark := " "
	if c.Risk {
		mark = "!"
	}
	where := c.Service
	if c.Operation != "" {
		where += " " + c.Operation
	}
	return fmt.Sprintf("%s %s: %s", mark, where, c.Message)
}

// Diff is the security diff of a change from old to new, sorted by service and operation.
func Diff(old, new ir.Gateway) []Change {
	var out []Change
	olds := servicesByName(old)
	news := servicesByName(new)
	for name, ns := range news {
		os, ok := olds[name]
		if !ok {
			out = append(out, Change{Risk: true, Service: name, Message: fmt.Sprintf("service added (backend %s)", backendURL(ns.Backend))})
			for _, op := range ns.Operations {
				out = append(out, Change{Risk: true, Service: name, Operation: opName(op), Message: "route added, " + describe(op)})
			}
			continue
		}
		if !reflect.DeepEqual(os, ns) { // most services of a push are unchanged
			out = append(out, diffService(os, ns)...)
		}
	}
	for name, os := range olds {
		if _, ok := news[name]; !ok {
			out = append(out, Change{Service: name, Message: fmt.Sprintf("service removed (%d routes)", len(os.Operations))})
		}
	}
	markMoves(out, olds, news)
	slices.SortFunc(out, func(a, b Change) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Operation, b.Operation), cmp.Compare(a.Message, b.Message))
	})
	return out
}

// markMoves names the service a route came from when it left one service and joined another in
// the same change (a rename, or an operation moved between services), so that a reviewer reads
// a move, not an unrelated addition. The line stays a risk: the route has a new owner.
func markMoves(changes []Change, olds, news map[string]ir.Service) {
	if !slices.ContainsFunc(changes, func(c Change) bool { return strings.HasPrefix(c.Message, "route added, ") }) {
		return // most changes add no route: no need to index every old operation
	}
	was := map[string]string{} // METHOD path → the service that served it and no longer does
	for name, os := range olds {
		ns := news[name]
		still := opsByKey(ns)
		for k, op := range opsByKey(os) {
			if _, ok := still[k]; !ok {
				was[opName(op)] = name
			}
		}
	}
	for i, c := range changes {
		if from, ok := was[c.Operation]; ok && from != c.Service && strings.HasPrefix(c.Message, "route added, ") {
			changes[i].Message = "route moved from " + from + ", " + strings.TrimPrefix(c.Message, "route added, ")
		}
	}
}

func diffService(o, n ir.Service) []Change {
	var out []Change
	add := func(risk bool, op, format string, a ...any) {
		out = append(out, Change{Risk: risk, Service: n.Name, Operation: op, Message: fmt.Sprintf(format, a...)})
	}
	ob, nb := o.Backend, n.Backend
	ob.Line, nb.Line = 0, 0 // where it is written is no change
	if ob != nb {
		add(true, "", "backend changed from %s to %s", backendURL(o.Backend), backendURL(n.Backend))
	}
	if !reflect.DeepEqual(o.CircuitBreaker, n.CircuitBreaker) {
		add(false, "", "circuit breaker: %s → %s", orNone(o.CircuitBreaker), orNone(n.CircuitBreaker))
	}
	if !reflect.DeepEqual(o.OutlierDetection, n.OutlierDetection) {
		add(false, "", "outlier detection: %s → %s", orNone(o.OutlierDetection), orNone(n.OutlierDetection))
	}
	if o.BasePath != n.BasePath {
		add(false, "", "basePath changed from %q to %q", o.BasePath, n.BasePath)
	}
	if o.StripBasePath != n.StripBasePath {
		// The backend sees other paths: its own routing (and checks) may now match others.
		add(true, "", "stripBasePath changed from %t to %t", o.StripBasePath, n.StripBasePath)
	}
	if added := missing(corsOrigins(n.CORS), corsOrigins(o.CORS)); len(added) > 0 {
		add(true, "", "CORS origins added: %s", strings.Join(added, ", "))
	}
	if n.CORS != nil && n.CORS.AllowCredentials && (o.CORS == nil || !o.CORS.AllowCredentials) {
		add(true, "", "CORS now allows credentials")
	}
	if n.CORS != nil {
		var was []string
		if o.CORS != nil {
			was = o.CORS.ExposeHeaders
		}
		if h := missing(n.CORS.ExposeHeaders, was); len(h) > 0 {
			add(true, "", "CORS exposes headers: %s", strings.Join(h, ", "))
		}
	}
	oldOps := opsByKey(o)
	newOps := opsByKey(n)
	for k, nop := range newOps {
		oop, ok := oldOps[k]
		if !ok {
			add(true, opName(nop), "route added, %s", describe(nop))
			continue
		}
		where := opName(nop)
		for _, key := range overrideKeys {
			key.diff(&oop, &nop, func(risk bool, format string, a ...any) { add(risk, where, format, a...) })
		}
		if !oop.Security.Anonymous && nop.Security.Anonymous {
			add(true, where, "became anonymous")
		}
		for _, r := range nop.Security.AnyOf {
			switch {
			case covered(r, oop.Security.AnyOf):
			case r.APIKey != nil:
				add(true, where, "now accepts an API key (%s in %s %s) with [%s]", r.APIKey.Scheme, r.APIKey.In, r.APIKey.Name, strings.Join(r.Scopes, " "))
			default:
				add(true, where, "lost scope: now accepts a token with [%s]", strings.Join(r.Scopes, " "))
			}
		}
		widened := false
		for _, r := range nop.Security.AnyOf {
			if covered(r, oop.Security.AnyOf) && widensIssuers(r, oop.Security.AnyOf) {
				widened = true
				add(true, where, "issuer pin widened: [%s] now accepted from %s", strings.Join(r.Scopes, " "), issuerList(r.Issuers))
			}
		}
		if !widened && !slices.EqualFunc(oop.Security.AnyOf, nop.Security.AnyOf, func(a, b ir.Requirement) bool {
			return slices.Equal(a.Issuers, b.Issuers)
		}) {
			add(false, where, "trusted issuers changed")
		}
	}
	for k, oop := range oldOps {
		if _, ok := newOps[k]; !ok {
			add(false, opName(oop), "route removed")
		}
	}
	return out
}

// covered reports whether some old requirement asks for a subset of r's scopes: then every
// token r accepts was accepted before.
func covered(r ir.Requirement, old []ir.Requirement) bool {
	for _, o := range old {
		if sameCredential(o, r) && len(missing(o.Scopes, r.Scopes)) == 0 {
			return true
		}
	}
	return false
}

// sameCredential reports whether two requirements take the same kind of credential: a token,
// or an API key in the same place.
func sameCredential(a, b ir.Requirement) bool {
	if a.APIKey == nil || b.APIKey == nil {
		return a.APIKey == nil && b.APIKey == nil
	}
	return a.APIKey.In == b.APIKey.In && strings.EqualFold(a.APIKey.Name, b.APIKey.Name) && a.APIKey.Prefix == b.APIKey.Prefix
}

// widensIssuers reports whether r accepts a token from an issuer that no old requirement
// asking for a subset of its scopes accepted: dropping an x-specgate-issuers pin, or adding
// an issuer to it, lets more tokens in.
func widensIssuers(r ir.Requirement, old []ir.Requirement) bool {
	for _, o := range old {
		if len(missing(o.Scopes, r.Scopes)) > 0 {
			continue
		}
		if len(o.Issuers) == 0 || len(r.Issuers) > 0 && len(missing(r.Issuers, o.Issuers)) == 0 {
			return false
		}
	}
	return true
}

func issuerList(issuers []string) string {
	if len(issuers) == 0 {
		return "any trusted issuer"
	}
	return strings.Join(issuers, ", ")
}

// loosened lists the quotas of old that new removes or raises, by key (and plan).
func loosened(old, new []ir.RateLimit) []string {
	var out []string
	olds, news := quotas(old), quotas(new)
	for _, o := range olds {
		best := -1.0
		for _, n := range news {
			if n.key == o.key {
				if r := n.perSecond(); best < 0 || r < best {
					best = r
				}
			}
		}
		switch {
		case best < 0:
			out = append(out, fmt.Sprintf("rate limit removed: %d per %s by %s", o.requests, o.per, o.key))
		case best > o.perSecond():
			out = append(out, fmt.Sprintf("rate limit loosened: %d per %s by %s is now %.4g per second", o.requests, o.per, o.key, best))
		}
	}
	return out
}

// quota is one count of a rate limit: a limit with plans counts one per plan and one for
// the default, each compared with its own.
type quota struct {
	key      string // what it counts by, and the plan
	requests uint32
	per      ir.Unit
}

func quotas(ls []ir.RateLimit) []quota {
	var out []quota
	for _, r := range ls {
		key := string(r.Key)
		if r.Key == ir.KeyHeader || r.Key == ir.KeyHeaderClient {
			key += ":" + r.Header
		}
		if r.Plans == nil {
			out = append(out, quota{key, r.Requests, r.Per})
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(r.Plans.Limits)) {
			out = append(out, quota{key + " on plan " + name, r.Plans.Limits[name], r.Per})
		}
		out = append(out, quota{key + " on other plans", r.Plans.Default, r.Per})
	}
	return out
}

func (q quota) perSecond() float64 {
	secs := map[ir.Unit]float64{ir.Second: 1, ir.Minute: 60, ir.Hour: 3600, ir.Day: 86400}[q.per]
	return float64(q.requests) / secs
}

func describe(op ir.Operation) string {
	auth := "anonymous"
	if !op.Security.Anonymous {
		var alts []string
		for _, r := range op.Security.AnyOf {
			alts = append(alts, "["+strings.Join(r.Scopes, " ")+"]")
		}
		auth = "scopes " + strings.Join(alts, " or ")
	}
	return fmt.Sprintf("%s, %s", op.Exposure, auth)
}

func opName(op ir.Operation) string { return op.Method + " " + op.Path }

func opsByKey(s ir.Service) map[string]ir.Operation {
	m := map[string]ir.Operation{}
	for _, op := range s.Operations {
		t, _ := ir.ParseTemplate(op.Path)
		m[op.Method+" "+t.Shape()] = op
	}
	return m
}

func servicesByName(g ir.Gateway) map[string]ir.Service {
	m := map[string]ir.Service{}
	for _, s := range g.Services {
		m[s.Name] = s
	}
	return m
}

func backendURL(b ir.Backend) string {
	scheme := "http"
	if b.TLS {
		scheme = "https"
	}
	u := fmt.Sprintf("%s://%s:%d%s", scheme, b.Host, b.Port, b.PathPrefix)
	if b.TLSProfile != "" {
		u += fmt.Sprintf(" (TLS profile %s, certificate for %s)", b.TLSProfile, cmp.Or(b.SAN, b.Host))
	}
	return u
}

func corsOrigins(c *ir.CORS) []string {
	if c == nil {
		return nil
	}
	return c.AllowOrigins
}

// missing lists the items of a that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// orNone shows a setting in the diff, "none" when absent.
func orNone[T any, P interface {
	*T
	fmt.Stringer
}](v P) string {
	if v == nil {
		return "none"
	}
	return v.String()
}
