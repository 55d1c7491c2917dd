package policy

import (
	"slices"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	in := Route{
		ID:      "orders.deleteOrder",
		AnyOf:   []Requirement{{Scopes: []string{"orders:write"}}, {Scopes: []string{"admin"}, Issuers: []string{"https://a/"}}},
		Headers: []string{"x-tenant"},
	}
	ext, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if ext[ExtRoute] != in.ID {
		t.Fatalf("route key = %q", ext[ExtRoute])
	}
	out, err := Decode(ext[ExtPolicy])
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || len(out.AnyOf) != 2 || out.AnyOf[1].Issuers[0] != "https://a/" || !out.Allowed("x-tenant") {
		t.Fatalf("round trip lost data: %+v", out)
	}
}

func TestDecodeRefusesUnenforceable(t *testing.T) {
	for _, s := range []string{
		`{"id":"a.b"}`, // neither anonymous nor a requirement
		`{"id":"a.b","anyOf":[{"scopes":["a b"]}]}`, // scope with a space
		`{"id":"a.b","anonymous":true,"extra":1}`,   // unknown field
		`not json`,
	} {
		if _, err := Decode(s); err == nil {
			t.Errorf("Decode(%s) accepted", s)
		}
	}
}

func TestAllowed(t *testing.T) {
	if !slices.IsSorted(BaseHeaders) {
		t.Fatal("BaseHeaders must stay sorted for binary search")
	}
	r := Route{ID: "a.b", Anonymous: true, Headers: []string{"x-b"}}
	if !r.Allowed("host") || !r.Allowed("x-b") || r.Allowed("authorization") || r.Allowed("x-user-id") {
		t.Fatal("Allowed mismatch")
	}
}

// Forwarded and Allowed are one rule: a header is forwarded exactly when the route allows it
// and it is not an identity header.
func TestForwardedIsAllowed(t *testing.T) {
	identity := []string{"x-client-id", "x-user-id"}
	r := Route{ID: "a.b", Anonymous: true, Headers: []string{"authorization", "x-tenant", "x-user-id"}}
	got := Forwarded(r.Headers, false, identity)
	if !slices.IsSorted(got) {
		t.Errorf("Forwarded is not sorted: %v", got)
	}
	for _, name := range slices.Concat(BaseHeaders, r.Headers, identity, []string{"cookie", "x-other"}) {
		_, id := slices.BinarySearch(identity, name)
		if want := r.Allowed(name) && !id; slices.Contains(got, name) != want {
			t.Errorf("%s: forwarded %v, allowed and not identity %v", name, !want, want)
		}
	}
	if !slices.IsSorted(WebSocketHeaders) {
		t.Fatal("WebSocketHeaders must stay sorted for binary search")
	}
	r.WebSocket = true
	ws := Forwarded(r.Headers, true, identity)
	for _, name := range slices.Concat(WebSocketHeaders, got, []string{"cookie"}) {
		if r.Allowed(name) != slices.Contains(ws, name) {
			t.Errorf("WebSocket route, %s: allowed %v, forwarded %v", name, r.Allowed(name), slices.Contains(ws, name))
		}
	}
}
