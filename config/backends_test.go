package config

import (
	"strings"
	"testing"
)

func TestBackendPolicy(t *testing.T) {
	def := Backends{}
	laptop := Backends{Allow: []string{"127.0.0.0/8", "localhost"}}
	cluster := Backends{Allow: []string{"*.svc.cluster.local", "10.0.0.0/8", "billing.example.com"}}
	for _, tc := range []struct {
		b    Backends
		host string
		want string // "" allowed, else a word of the refusal
	}{
		{def, "orders.shop.svc.cluster.local", ""},
		{def, "api.example.com", ""},
		{def, "10.1.2.3", ""},
		{def, "127.0.0.1", "loopback"},
		{def, "127.9.9.9", "loopback"},
		{def, "::1", "loopback"},
		{def, "[::1]", "loopback"},
		{def, "::ffff:127.0.0.1", "loopback"},
		{def, "localhost", "loopback"},
		{def, "LOCALHOST.", "loopback"},
		{def, "0.0.0.0", "unspecified"},
		{def, "::", "unspecified"},
		{def, "169.254.169.254", "link-local"},
		{def, "fe80::1", "link-local"},
		{def, "metadata.google.internal", "metadata"},
		{def, "metadata.google.internal.", "metadata"},
		{laptop, "127.0.0.1", ""},
		{laptop, "localhost", ""},
		{laptop, "169.254.169.254", "link-local"},
		{laptop, "orders.shop.svc.cluster.local", "not in"},
		{cluster, "orders.shop.svc.cluster.local", ""},
		{cluster, "svc.cluster.local.evil.com", "not in"},
		{cluster, "10.4.0.7", ""},
		{cluster, "billing.example.com", ""},
		{cluster, "127.0.0.1", "loopback"},
		{cluster, "api.example.com", "not in"},
	} {
		err := tc.b.Check(tc.host)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v %s: refused: %v", tc.b.Allow, tc.host, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v %s: %v, want a refusal saying %q", tc.b.Allow, tc.host, err, tc.want)
		}
	}
	if errs := (Backends{Allow: []string{"*.ok.example", "bad host", "*", "10.0.0.0/33"}}).validate(); len(errs) != 3 {
		t.Errorf("want 3 syntax errors, got %v", errs)
	}
}
