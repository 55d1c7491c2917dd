package compiler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A symlink in the spec directory that points outside it does not carry a $ref out: the
// containment check is made on the resolved path.
func TestRefThroughASymlinkOutsideIsRefused(t *testing.T) {
	root := t.TempDir()
	outside, dir := filepath.Join(root, "outside"), filepath.Join(root, "specs")
	for _, d := range []string{outside, dir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := "Item:\n  get:\n    operationId: stolen\n    responses: {\"200\": {description: ok}}\n"
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "frags")); err != nil {
		t.Fatal(err)
	}
	spec := `openapi: 3.1.0
info: {title: Leak, version: 1.0.0}
x-specgate: {service: leak, backend: "http://leak.shop.svc.cluster.local:8080"}
security: []
paths:
  /item:
    $ref: "frags/secret.yaml#/Item"
`
	if err := os.WriteFile(filepath.Join(dir, "leak.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	gw, diags := Compile(dir, Options{})
	if !diags.HasErrors() || !strings.Contains(diags.Err().Error(), "outside the spec directory") {
		t.Fatalf("a $ref through a symlink to %s: %v (services %d), want refused", outside, diags.Err(), len(gw.Services))
	}
}

// A set compiled without a directory (the control plane's store) reads nothing but its own
// files: a $ref to any other file is refused, whatever the working directory holds.
func TestSetWithoutADirectoryReadsOnlyItself(t *testing.T) {
	spec := `openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {service: a, backend: "http://a.shop.svc.cluster.local:8080"}
security: []
paths:
  /archive:
    $ref: "testdata/layout/specs/fragments/paths.yaml#/Archive"
`
	_, diags := CompileFiles("", map[string][]byte{"a.yaml": []byte(spec)}, Options{})
	if !diags.HasErrors() || !strings.Contains(diags.Err().Error(), "not a file of the spec set") {
		t.Fatalf("a $ref outside a set without a directory: %v", diags.Err())
	}
}
