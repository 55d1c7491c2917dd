package config

import (
	"strings"
	"testing"
)

// A gateway.yaml mistake names the key's path and its line, in YAML terms, and a misspelt key
// the key meant.
func TestDecodeErrorsNameKeyAndLine(t *testing.T) {
	for doc, want := range map[string]string{
		"authz: {timeout: 200}":                         `line 1: authz.timeout: duration must be a string like "200ms"`,
		"listeners:\n  public: 8080\n  internl: 9000\n": `line 3: listeners.internl: unknown key "internl" (did you mean "internal"?)`,
		"rateLimit: {stor: memory}":                     `line 1: rateLimit.stor: unknown key "stor" (did you mean "store"?)`,
		"revocaton: {store: memory}":                    `line 1: revocaton: unknown key "revocaton" (did you mean "revocation"?)`,
		"issuers:\n  - issuer: a\n    audiences: api\n": `line 3: issuers.0.audiences: want a list, not a string`,
		"xffTrustedHops: two":                           `line 1: xffTrustedHops: want a number, not a string`,
		"authz:\n  failOpen: \"yes\"\n":                 `line 2: authz.failOpen: want true or false, not a string`,
		"authz: {timeout: 1s}\nauthz: {timeout: 2s}\n":  `line 2: key "authz" already set`,
		"frobnicate: 1":                                 `line 1: frobnicate: unknown key "frobnicate"`,
		// Keys absent from the defaults: a list item's, a map value's, an omitted one.
		"issuers:\n  - isuer: a\n":                     `line 2: issuers.0.isuer: unknown key "isuer" (did you mean "issuer"?)`,
		"backendTLS: {p: {ca: /a/ca.crt, cert: /a/t}}": `line 1: backendTLS.p.cert: unknown key "cert"`,
		"backendTSL: {}":                               `line 1: backendTSL: unknown key "backendTSL" (did you mean "backendTLS"?)`,
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "frobnicate") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%q: a suggestion for a key nothing resembles: %v", doc, err)
		}
	}
}
