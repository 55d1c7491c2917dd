package verify

import "testing"

// Each base64url segment has one canonical spelling; a token re-spelled with unused bits set
// (same bytes, another hash) is refused, so a revocation by token hash cannot be sidestepped.
func TestCanonicalBase64URL(t *testing.T) {
	for seg, want := range map[string]bool{
		"": true, "AA": true, "AB": false, "AAA": true, "AAB": false, "AAAA": true, "A": false,
		"eyJhbGciOiJSUzI1NiJ9": true, "QQ": true, "QR": false, "QUE": true, "QUF": false,
	} {
		if got := canonicalBase64URL(seg); got != want {
			t.Errorf("canonicalBase64URL(%q) = %v, want %v", seg, got, want)
		}
	}
}
