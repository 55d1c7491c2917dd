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
