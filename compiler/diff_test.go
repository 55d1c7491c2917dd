package compiler

import (
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/compiler/ir"
)

func TestDiffFlagsWhatWidensAccess(t *testing.T) {
	op := func(method, path string, exp ir.Exposure, scopes ...string) ir.Operation {
		o := ir.Operation{ID: "s." + method, Method: method, Path: path, Exposure: exp}
		if len(scopes) == 0 {
			o.Security.Anonymous = true
		} else {
			o.Security.AnyOf = []ir.Requirement{{Scopes: scopes}}
		}
		return o
	}
	old := ir.Gateway{Services: []ir.Service{{Name: "s", Backend: ir.Backend{Host: "a", Port: 80}, Operations: []ir.Operation{
		op("DELETE", "/x/{id}", ir.Internal, "admin"),
		op("GET", "/x/{id}", ir.Public, "read", "extra"),
		op("POST", "/x", ir.Public, "write"),
		op("PUT", "/x/{id}", ir.Public, "write"),
	}}}}
	old.Services[0].Operations[2].RateLimits = []ir.RateLimit{{Requests: 10, Per: ir.Minute, Key: ir.KeyClient}}
	old.Services[0].Operations[3].RateLimits = []ir.RateLimit{{Requests: 10, Per: ir.Minute, Key: ir.KeyClient}}

	nw := ir.Gateway{Services: []ir.Service{{Name: "s", Backend: ir.Backend{Host: "b", Port: 80}, Operations: []ir.Operation{
		op("DELETE", "/x/{key}", ir.Public, "admin"), // became public (renamed parameter: same route)
		op("GET", "/x/{id}", ir.Public, "read"),      // lost scope "extra"
		op("POST", "/x", ir.Public),                  // anonymous, limit removed
		op("PUT", "/x/{id}", ir.Public, "write"),     // limit loosened
		op("GET", "/y", ir.Public),                   // added
	}}}}
	nw.Services[0].Operations[3].RateLimits = []ir.RateLimit{{Requests: 1, Per: ir.Second, Key: ir.KeyClient}}
	nw.Services[0].Operations[3].Timeout = time.Second

	var risky []string
	for _, c := range Diff(old, nw) {
		if c.Risk {
			risky = append(risky, c.String())
		}
	}
	got := strings.Join(risky, "\n")
	for _, want := range []string{
		"backend changed from http://a:80 to http://b:80",
		"DELETE /x/{key}: became public",
		"GET /x/{id}: lost scope: now accepts a token with [read]",
		"POST /x: became anonymous",
		"POST /x: rate limit removed: 10 per minute by client",
		"PUT /x/{id}: rate limit loosened",
		"GET /y: route added, public, anonymous",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	if len(Diff(old, old)) != 0 {
		t.Errorf("a model differs from itself: %v", Diff(old, old))
	}
}
