package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

func TestLintExitCodes(t *testing.T) {
	out, _, err := run(t, "lint", "--specs", "../../examples/specs")
	if err != nil || !strings.Contains(out, "ok: 3 services") {
		t.Fatalf("valid specs: %v %q", err, out)
	}
	_, stderr, err := run(t, "lint", "--specs", "../../compiler/testdata/duplicate-route/specs")
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("refused specs: err %v, want exit 1", err)
	}
	if !strings.Contains(stderr, "b.yaml:7: GET /things/{thingId}: a router cannot tell it from a.yaml:7: GET /things/{id}") {
		t.Fatalf("diagnostic does not name both files and operations: %q", stderr)
	}
	// Warnings alone exit 0.
	if _, stderr, err := run(t, "lint", "--specs", "../../compiler/testdata/missing-operationid/specs"); err != nil || !strings.Contains(stderr, "warning: no operationId") {
		t.Fatalf("warnings: %v %q", err, stderr)
	}
}

func TestCompileFormats(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"bootstrap", "resources", "ratelimit"} {
		out := filepath.Join(dir, f+".yaml")
		if _, stderr, err := run(t, "compile", "--specs", "../../examples/specs", "--format", f, "-o", out); err != nil {
			t.Fatalf("%s: %v %s", f, err, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: empty output: %v", f, err)
		}
	}
	if _, _, err := run(t, "compile", "--specs", "../../examples/specs", "--format", "nginx"); err == nil {
		t.Fatal("unknown format accepted")
	}
}
