package compiler

import (
	"strings"
	"testing"
	"time"
)

// One Loader compiling a set again (as the control plane does on each push) reuses the
// overlaid description only while the overlay and its description stay the same: a changed
// overlay, or a changed description, is applied anew.
func TestOverlaysAppliedAgainWhenTheyChange(t *testing.T) {
	desc := "openapi: 3.1.0\ninfo: {title: A, version: 1.0.0}\nsecurity: []\npaths:\n  /x:\n    get: {operationId: x, responses: {\"200\": {description: ok}}}\n"
	overlay := func(timeout string) string {
		return "overlay: 1.0.0\ninfo: {title: p, version: 1.0.0}\nextends: a.yaml\nactions:\n  - target: $\n    update:\n" +
			"      x-specgate: {service: a, backend: \"http://a.shop.svc.cluster.local:8080\", basePath: /a, timeout: " + timeout + "}\n"
	}
	l := NewLoader()
	timeoutOf := func(files map[string]string) time.Duration {
		t.Helper()
		bs := map[string][]byte{}
		for k, v := range files {
			bs[k] = []byte(v)
		}
		gw, diags := CompileFiles("", bs, Options{Loader: l})
		if err := diags.Err(); err != nil {
			t.Fatal(err)
		}
		return gw.Services[0].Operations[0].Timeout
	}
	if got := timeoutOf(map[string]string{"a.yaml": desc, "p.yaml": overlay("5s")}); got != 5*time.Second {
		t.Fatalf("first compile: timeout %s", got)
	}
	if got := timeoutOf(map[string]string{"a.yaml": desc, "p.yaml": overlay("7s")}); got != 7*time.Second {
		t.Errorf("after the overlay changed: timeout %s, want 7s", got)
	}
	changed := strings.Replace(desc, "operationId: x", "operationId: y", 1)
	gw, diags := CompileFiles("", map[string][]byte{"a.yaml": []byte(changed), "p.yaml": []byte(overlay("7s"))}, Options{Loader: l})
	if err := diags.Err(); err != nil || gw.Services[0].Operations[0].ID != "a.y" {
		t.Errorf("after the description changed: %v %+v", err, gw.Services[0].Operations)
	}
}
