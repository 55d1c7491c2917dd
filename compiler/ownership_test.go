package compiler

import (
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/config"
)

func TestCheckOwnership(t *testing.T) {
	svc := func(name, base string, paths ...string) ir.Service {
		s := ir.Service{Name: name, File: name + ".yaml", BasePath: base}
		for _, p := range paths {
			s.Operations = append(s.Operations, ir.Operation{Method: "GET", Path: base + p})
		}
		return s
	}
	gw := ir.Gateway{Services: []ir.Service{
		svc("orders", "/orders", "/{id}", "/mine"),
		svc("intruder", "", "/orders/mine", "/{tenant}/mine", "/ordersx", "/carts/{id}", "/orders"),
		svc("nested", "/orders/admin", "/purge"),
		svc("carts", "/carts", "/{id}"),
	}}
	var got []string
	for _, d := range checkOwnership(gw, nil) {
		got = append(got, d.String())
	}
	want := []string{
		"intruder.yaml: GET /orders/mine: can match paths under /orders, the basePath of service orders",
		"intruder.yaml: GET /{tenant}/mine: can match paths under /orders, the basePath of service orders",
		"intruder.yaml: GET /orders: can match paths under /orders",
		"nested.yaml: x-specgate.basePath /orders/admin lies under /orders, the basePath of service orders",
		"intruder.yaml: GET /carts/{id}: can match paths under /carts, the basePath of service carts",
		"intruder.yaml: GET /{tenant}/mine: can match paths under /carts",
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
	if len(got) != len(want) || strings.Contains(all, "/ordersx") {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), all)
	}
	if d := checkOwnership(gw, []string{"/orders", "/carts"}); len(d) != 0 {
		t.Errorf("shared prefixes still refused: %v", d)
	}
}

// A shared prefix lets services serve beside each other under it, never inside another
// service's basePath: front, at the shared /mall, cannot declare /mall/orders/mine beside
// orders' /mall/orders/{id} (ordered first, it would take orders' requests and, allowed the
// Authorization header, their tokens).
func TestSharedPrefixKeepsNestedBasePathsOwned(t *testing.T) {
	gw := ir.Gateway{Services: []ir.Service{
		{Name: "front", File: "front.yaml", BasePath: "/mall", Operations: []ir.Operation{{Method: "GET", Path: "/mall/orders/mine"}, {Method: "GET", Path: "/mall/home"}}},
		{Name: "orders", File: "orders.yaml", BasePath: "/mall/orders", Operations: []ir.Operation{{Method: "GET", Path: "/mall/orders/{id}"}}},
	}}
	var got []string
	for _, d := range checkOwnership(gw, []string{"/mall"}) {
		got = append(got, d.String())
	}
	if len(got) != 1 || !strings.Contains(got[0], "front.yaml: GET /mall/orders/mine: can match paths under /mall/orders, the basePath of service orders") {
		t.Fatalf("shared /mall: %q, want front's /mall/orders/mine refused", got)
	}
}

// Services without a basePath share the root: promotions' /orders/special, ordered before
// orders' /orders/{id}, would take the requests orders serves there (any method: its path
// answers 405 to the others). An error naming both, unless gateway.yaml pathOverrides lets
// that pair through; a service's own literal beside its own template, and paths no template of
// another service matches, are fine.
func TestRootServicesDoNotTakeEachOthersRequests(t *testing.T) {
	gw := ir.Gateway{Services: []ir.Service{
		{Name: "orders", File: "orders.yaml", Operations: []ir.Operation{{Method: "GET", Path: "/orders/{id}"}, {Method: "GET", Path: "/orders/mine"}}},
		{Name: "promotions", File: "promotions.yaml", Operations: []ir.Operation{{Method: "POST", Path: "/orders/special"},
			{Method: "GET", Path: "/orders/{id}/special"}, {Method: "GET", Path: "/promotions/{id}"}}},
		{Name: "reports", File: "reports.yaml", Operations: []ir.Operation{{Method: "GET", Path: "/orders/{id}.csv"}}},
	}}
	var got []string
	for _, d := range checkRootShadows(gw, nil) {
		got = append(got, d.String())
	}
	want := []string{
		"promotions.yaml: POST /orders/special: is ordered before GET /orders/{id} of service orders (orders.yaml)",
		"reports.yaml: GET /orders/{id}.csv: is ordered before GET /orders/{id} of service orders (orders.yaml)",
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), all)
	}
	allowed := []config.PathOverride{{Path: "/orders/special", Service: "promotions", Over: "orders"}, {Path: "/orders/{id}.csv", Service: "reports", Over: "orders"}}
	if d := checkRootShadows(gw, allowed); len(d) != 0 {
		t.Errorf("allowed pairs still refused: %v", d)
	}
	if d := checkRootShadows(gw, []config.PathOverride{{Path: "/orders/special", Service: "promotions", Over: "catalog"}}); len(d) != 2 {
		t.Errorf("an override for another pair let this one through: %v", d)
	}
}
