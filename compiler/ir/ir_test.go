package ir

import "testing"

// A path the template parser refuses is refused by Validate: translation would otherwise
// leave the operation without a route (only the catch-all 404 would match it).
func TestValidateParsesPaths(t *testing.T) {
	for _, p := range []string{"/a//b", "/a/{", "/a/{x}{y}", "/a?x=1", "orders"} {
		gw := Gateway{Services: []Service{{Name: "s", Backend: Backend{Host: "h", Port: 80},
			Operations: []Operation{{ID: "s.op", Method: "GET", Path: p, Exposure: Public, Security: Security{Anonymous: true}}}}}}
		if err := gw.Validate(); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}
