package compiler

import (
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler/ir"
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
