package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
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
	out, _, err := run(t, "lint", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml")
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
	// Warnings alone exit 0 (the fixture routes to 127.0.0.1, which a gateway.yaml must allow).
	laptop := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(laptop, []byte("backends: {allow: [127.0.0.0/8]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "lint", "--specs", "../../compiler/testdata/missing-operationid/specs", "--config", laptop); err != nil || !strings.Contains(stderr, "warning: no operationId") {
		t.Fatalf("warnings: %v %q", err, stderr)
	}
}

func TestCompileFormats(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"bootstrap", "resources", "ratelimit"} {
		out := filepath.Join(dir, f+".yaml")
		if _, stderr, err := run(t, "compile", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml", "--format", f, "-o", out); err != nil {
			t.Fatalf("%s: %v %s", f, err, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: empty output: %v", f, err)
		}
	}
	if _, _, err := run(t, "compile", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml", "--format", "nginx"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

// TestLintTenBrokenFiles puts ten files broken in ten different ways in one directory: one
// lint run names every one of them, one line per problem, each line FILE[:LINE]: ….
func TestLintTenBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{
		"bad-json/specs/broken.json", "bad-yaml/specs/broken.yaml", "duplicate-keys/specs/admin.json",
		"not-specs/specs/legacy.yaml", "not-specs/specs/empty.yaml", "not-specs/specs/two-docs.yaml",
		"bad-methods/specs/docs.yaml", "unsupported-security/specs/api.yaml", "missing-security/specs/api.yaml",
		"look-alike-conflict/specs/contacts.yaml",
	} {
		b, err := os.ReadFile(filepath.Join("../../compiler/testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		// Ten distinct names; distinct services so that no file's problem hides another's.
		name := strings.ReplaceAll(filepath.Dir(filepath.Dir(f)), "/", "-") + "-" + filepath.Base(f)
		b = bytes.Replace(b, []byte("x-specgate: {"), []byte("x-specgate: {service: "+strings.TrimSuffix(name, filepath.Ext(name))+", "), 1)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, err := run(t, "lint", "--specs", dir)
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("err %v, want exit 1", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	files := map[string]bool{}
	for _, l := range lines {
		file, _, ok := strings.Cut(l, ":")
		if !ok || !strings.HasSuffix(file, ".json") && !strings.HasSuffix(file, ".yaml") {
			t.Errorf("not a lint line: %q", l)
		}
		files[file] = true
	}
	if len(files) != 10 {
		t.Errorf("%d of 10 files named:\n%s", len(files), stderr)
	}
	if len(lines) < 15 || len(lines) > 25 {
		t.Errorf("%d lines; every problem once expected:\n%s", len(lines), stderr)
	}
}

// --log-level, on every command, sets the level of the roles' logger; a bad value is refused
// with the values it takes.
func TestLogLevelFlag(t *testing.T) {
	defer logLevel.Set(slog.LevelInfo)
	if _, _, err := run(t, "--log-level", "debug", "lint", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml"); err != nil {
		t.Fatal(err)
	}
	if !logger().Enabled(context.Background(), slog.LevelDebug) {
		t.Error("--log-level debug: the logger does not log at debug")
	}
	if _, _, err := run(t, "--log-level", "warn", "lint", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml"); err != nil || logger().Enabled(context.Background(), slog.LevelInfo) {
		t.Errorf("--log-level warn: %v, info enabled %v", err, logger().Enabled(context.Background(), slog.LevelInfo))
	}
	_, _, err := run(t, "--log-level", "verbose", "lint", "--specs", "../../examples/specs")
	if err == nil || !strings.Contains(err.Error(), `--log-level "verbose": want debug, info, warn or error`) {
		t.Errorf("bad level: %v", err)
	}
}

// revoke --subject names every token of a token's subject, so it needs --jwt.
func TestRevokeSubjectNeedsJWT(t *testing.T) {
	_, _, err := run(t, "revoke", "--sub", "alice", "--subject")
	if err == nil || !strings.Contains(err.Error(), "--subject goes with --jwt") {
		t.Errorf("revoke --sub alice --subject: %v", err)
	}
}

// lint checks what compile and the control plane check: without --config, the default
// backend policy (the example specs route to 127.0.0.1, which only examples/gateway.yaml
// allows).
func TestLintAppliesTheDefaultBackendPolicy(t *testing.T) {
	_, stderr, err := run(t, "lint", "--specs", "../../examples/specs")
	var code exitCode
	if !errors.As(err, &code) || code != 1 || !strings.Contains(stderr, "x-specgate.backend: 127.0.0.1 is a loopback address") {
		t.Fatalf("lint without --config: %v %q, want exit 1 naming the loopback backend", err, stderr)
	}
	if out, _, err := run(t, "lint", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml"); err != nil || !strings.Contains(out, "ok: 3 services") {
		t.Fatalf("lint with examples/gateway.yaml: %v %q", err, out)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files of --output json")

// golden compares got with testdata/name, or rewrites it with -update (review the diff).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./cmd/specgate -run %s -update, and review the diff):\n%s", path, t.Name(), got)
	}
}

// lint --output json and compile --diagnostics json: one document with the same verdict and
// exit code as the text form, each diagnostic with its file, line and operation.
func TestDiagnosticsJSON(t *testing.T) {
	out, _, err := run(t, "lint", "--specs", "../../examples/specs", "--config", "../../examples/gateway.yaml", "-o", "json")
	var ok report
	if err != nil || json.Unmarshal([]byte(out), &ok) != nil || !ok.OK || ok.Services != 3 || ok.Operations == 0 || ok.Diagnostics == nil {
		t.Fatalf("valid specs: %v %+v %s", err, ok, out)
	}
	out, _, err = run(t, "lint", "--specs", "../../compiler/testdata/duplicate-route/specs", "-o", "json")
	if code := (exitCode(0)); !errors.As(err, &code) || code != 1 {
		t.Errorf("lint of refused specs: %v, want exit code 1", err)
	}
	golden(t, "lint-refused.json", out)

	laptop := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(laptop, []byte("backends: {allow: [127.0.0.0/8]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, "compile", "--specs", "../../compiler/testdata/missing-operationid/specs", "--config", laptop, "--diagnostics", "json")
	if err != nil || len(stdout) == 0 {
		t.Errorf("compile with warnings: %v, %d bytes of config", err, len(stdout))
	}
	golden(t, "compile-warnings.json", stderr)
	_, stderr, err = run(t, "compile", "--specs", "../../compiler/testdata/duplicate-route/specs", "--diagnostics", "json")
	if code := (exitCode(0)); !errors.As(err, &code) || code != 1 {
		t.Errorf("compile of refused specs: %v, want exit code 1", err)
	}
	if stderr != out {
		t.Errorf("compile --diagnostics json and lint --output json differ on refused specs:\n%s\n%s", stderr, out)
	}
}
