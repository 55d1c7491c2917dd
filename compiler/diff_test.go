package compiler

import (
	"slices"
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

// Dropping an issuer pin, or adding an issuer to it, widens access and is flagged as a risk;
// narrowing a pin is not.
func TestDiffFlagsWidenedIssuerPins(t *testing.T) {
	gw := func(issuers ...string) ir.Gateway {
		return ir.Gateway{Services: []ir.Service{{Name: "s", Backend: ir.Backend{Host: "a", Port: 80}, Operations: []ir.Operation{{
			ID: "s.get", Method: "GET", Path: "/x", Exposure: ir.Public,
			Security: ir.Security{AnyOf: []ir.Requirement{{Scopes: []string{"admin"}, Issuers: issuers}}},
		}}}}}
	}
	risky := func(old, new ir.Gateway) []string {
		var out []string
		for _, c := range Diff(old, new) {
			if c.Risk {
				out = append(out, c.String())
			}
		}
		return out
	}
	staff, both := gw("https://staff.example/"), gw("https://staff.example/", "https://customers.example/")
	if got := risky(staff, gw()); len(got) != 1 || !strings.Contains(got[0], "issuer pin widened: [admin] now accepted from any trusted issuer") {
		t.Errorf("pin dropped: %v", got)
	}
	if got := risky(staff, both); len(got) != 1 || !strings.Contains(got[0], "https://customers.example/") {
		t.Errorf("issuer added to the pin: %v", got)
	}
	if got := risky(both, staff); len(got) != 0 {
		t.Errorf("a narrower pin is not a risk: %v", got)
	}
	if got := Diff(both, staff); len(got) != 1 || got[0].Message != "trusted issuers changed" {
		t.Errorf("a narrower pin is still reported: %v", got)
	}
}

// A rename (orders to orders-v2) and an operation moved between services read as moves: the
// added routes name the service they came from, and stay risks (they have a new owner).
func TestDiffNamesMoves(t *testing.T) {
	op := func(method, path string) ir.Operation {
		return ir.Operation{ID: method + path, Method: method, Path: path, Exposure: ir.Public, Security: ir.Security{Anonymous: true}}
	}
	svc := func(name string, ops ...ir.Operation) ir.Service {
		return ir.Service{Name: name, Backend: ir.Backend{Host: name, Port: 80}, Operations: ops}
	}
	old := ir.Gateway{Services: []ir.Service{svc("orders", op("GET", "/orders/{id}")), svc("catalog", op("GET", "/products"), op("GET", "/reviews"))}}
	nw := ir.Gateway{Services: []ir.Service{svc("orders-v2", op("GET", "/orders/{id}"), op("GET", "/reviews")), svc("catalog", op("GET", "/products"))}}
	var lines []string
	for _, c := range Diff(old, nw) {
		lines = append(lines, c.String())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"  catalog GET /reviews: route removed",
		"  orders: service removed (1 routes)",
		"! orders-v2 GET /orders/{id}: route moved from orders, public, anonymous",
		"! orders-v2 GET /reviews: route moved from catalog, public, anonymous",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
}

// Forwarding the Authorization header or cookies (a backend could replay users' tokens against
// every service of the audience), a stripBasePath change and CORS changes that let more
// through are ! lines.
func TestDiffFlagsCredentialsStripAndCORS(t *testing.T) {
	op := ir.Operation{ID: "s.get", Method: "GET", Path: "/s/x", Exposure: ir.Public, Security: ir.Security{Anonymous: true}}
	old := ir.Service{Name: "s", Backend: ir.Backend{Host: "a", Port: 80}, BasePath: "/s", StripBasePath: false,
		CORS: &ir.CORS{AllowOrigins: []string{"https://a.example"}}, Operations: []ir.Operation{op}}
	nw := old
	nw.StripBasePath = true
	nw.CORS = &ir.CORS{AllowOrigins: []string{"https://a.example"}, AllowCredentials: true, ExposeHeaders: []string{"X-Balance"}}
	nop := op
	nop.AllowedHeaders = []string{"authorization", "Cookie", "X-Tenant"}
	nw.Operations = []ir.Operation{nop}
	var risky, safe []string
	for _, c := range Diff(ir.Gateway{Services: []ir.Service{old}}, ir.Gateway{Services: []ir.Service{nw}}) {
		if c.Risk {
			risky = append(risky, c.String())
		} else {
			safe = append(safe, c.String())
		}
	}
	got := strings.Join(risky, "\n")
	for _, want := range []string{
		"! s GET /s/x: credentials now forwarded to the backend: authorization, Cookie",
		"! s: stripBasePath changed from false to true",
		"! s: CORS now allows credentials",
		"! s: CORS exposes headers: X-Balance",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("risky lines lack %q:\n%s", want, got)
		}
	}
	if s := strings.Join(safe, "\n"); !strings.Contains(s, "headers now forwarded: X-Tenant") {
		t.Errorf("the plain header line: %s", s)
	}
}

// An edit that moves lines and changes nothing else (a comment above x-specgate) is no
// change: the diff is empty, not "backend changed from X to X".
func TestDiffIgnoresWhereThingsAreWritten(t *testing.T) {
	spec := `openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {service: a, backend: "http://a.shop.svc.cluster.local:8080", basePath: /a}
security: []
paths:
  /x:
    get: {operationId: x, responses: {"200": {description: ok}}}
`
	before, diags := CompileFiles("", map[string][]byte{"a.yaml": []byte(spec)}, Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	after, diags := CompileFiles("", map[string][]byte{"a.yaml": []byte("# owned by the a team\n\n" + spec)}, Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	if changes := Diff(before, after); len(changes) != 0 {
		t.Errorf("moved lines make a diff: %v", changes)
	}
}

// Accepting an API key where only tokens were accepted is a new way in: a ! line. A token
// requirement is not covered by an API key's (nor the reverse).
func TestDiffFlagsAPIKeys(t *testing.T) {
	spec := func(security string) []byte {
		return []byte(`openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {service: a, backend: "http://a.shop.svc.cluster.local:8080", basePath: /a}
security: ` + security + `
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-API-Key}
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {read: r}}}}
paths:
  /x:
    get: {operationId: x, responses: {"200": {description: ok}}}
`)
	}
	compile := func(security string) ir.Gateway {
		gw, diags := CompileFiles("", map[string][]byte{"a.yaml": spec(security)}, Options{})
		if err := diags.Err(); err != nil {
			t.Fatal(err)
		}
		return gw
	}
	for _, tc := range []struct{ from, to, want string }{
		{"[{oauth: [read]}]", "[{oauth: [read]}, {key: [read]}]", "! a GET /a/x: now accepts an API key (key in header X-API-Key) with [read]"},
		{"[{key: [read]}]", "[{key: [read]}, {oauth: []}]", "! a GET /a/x: lost scope: now accepts a token with []"},
	} {
		var got []string
		for _, c := range Diff(compile(tc.from), compile(tc.to)) {
			got = append(got, c.String())
		}
		if !slices.Contains(got, tc.want) {
			t.Errorf("%s → %s: %v, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}

// A plan's limit raised is a loosened quota, named with its plan; a plan's limit lowered is
// not a risk.
func TestDiffFlagsLoosenedPlans(t *testing.T) {
	limits := func(gold, def uint32) []ir.RateLimit {
		return []ir.RateLimit{{Key: ir.KeyClient, Per: ir.Minute, Plans: &ir.Plans{Limits: map[string]uint32{"gold": gold}, Default: def}}}
	}
	if got := loosened(limits(100, 10), limits(200, 5)); len(got) != 1 || got[0] != "rate limit loosened: 100 per minute by client on plan gold is now 3.333 per second" {
		t.Errorf("gold raised, default lowered: %q", got)
	}
	if got := loosened(limits(100, 10), limits(50, 10)); len(got) != 0 {
		t.Errorf("gold lowered: %q", got)
	}
}
