package feed

import (
	"encoding/json"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/specgate/specgate/extauthz/devissuer"
)

// The plugin's keys follow authz's: a changed set replaces the held one, and an issuer the
// answer lacks keeps no keys at all (its tokens then go to authz), never the last ones fed.
func TestSetKeys(t *testing.T) {
	jwks := func() json.RawMessage {
		k, err := devissuer.Generate("ES256")
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		if err := set.AddKey(k.Public()); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a1, a2, b1 := jwks(), jwks(), jwks()
	held := map[string]*IssuerKeys{"a": {}, "b": {}}
	if err := SetKeys(held, map[string]json.RawMessage{"a": a1, "b": b1}); err != nil {
		t.Fatal(err)
	}
	first := held["a"].Keys()
	if first == nil || first.Len() != 1 || held["b"].Keys() == nil {
		t.Fatalf("keys not taken in: %v %v", first, held["b"].Keys())
	}
	if err := SetKeys(held, map[string]json.RawMessage{"a": a1}); err != nil {
		t.Fatal(err)
	}
	if held["a"].Keys() != first {
		t.Error("an unchanged set was parsed again")
	}
	if held["b"].Keys() != nil {
		t.Error("an issuer the answer lacks kept the keys fed before")
	}
	if err := SetKeys(held, map[string]json.RawMessage{"a": a2}); err != nil {
		t.Fatal(err)
	}
	if held["a"].Keys() == first {
		t.Error("a rotated set did not replace the held one")
	}
	if err := SetKeys(held, map[string]json.RawMessage{"a": json.RawMessage(`{"keys": 1}`)}); err == nil {
		t.Error("a malformed set was taken")
	}
}
