package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/testxds"
	"github.com/specgate/specgate/xds"
)

// specgate specs lists the live services, prints one's file as the control plane holds it,
// and removes services through a change set, as push --delete does (a removal widens nothing,
// yet it is a change: the history gains a version).
func TestSpecsListGetRm(t *testing.T) {
	dir := t.TempDir()
	alpha := "openapi: 3.1.0\ninfo: {title: Alpha, version: 1.0.0}\nx-specgate: {service: alpha, backend: \"http://127.0.0.1:9\", basePath: /alpha}\nsecurity: []\npaths:\n  /a: {get: {operationId: a, responses: {\"200\": {description: ok}}}}\n  /b: {get: {operationId: b, responses: {\"200\": {description: ok}}}}\n"
	beta := strings.NewReplacer("alpha", "beta", "Alpha", "Beta").Replace(alpha)
	for name, spec := range map[string]string{"alpha.yaml": alpha, "beta.yaml": beta} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"}
	cp := testxds.Start(t, xds.Options{SpecDir: dir, Gateway: cfg, AdminToken: "t0k", ListenAddress: "127.0.0.1",
		Debounce: 10 * time.Millisecond, MaxSpecBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "127.0.0.1:0", "127.0.0.1:0")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetArgs(append(args, "--server", cp.API, "--token", "t0k"))
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("specs", "list")
	if err != nil || !strings.Contains(out, "alpha") || !strings.Contains(out, "beta.yaml") || !strings.Contains(out, "(live version 1)") {
		t.Fatalf("specs list: %v\n%s", err, out)
	}
	if out, err := run("specs", "get", "alpha"); err != nil || out != alpha {
		t.Fatalf("specs get alpha: %v\n%q", err, out)
	}
	if _, err := run("specs", "get", "ghost"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("specs get of an unknown service: %v", err)
	}
	if out, err := run("specs", "rm", "alpha"); err != nil {
		t.Fatalf("specs rm alpha: %v\n%s", err, out)
	}
	out, err = run("specs", "list", "--output", "json")
	if err != nil || strings.Contains(out, `"alpha"`) || !strings.Contains(out, `"beta"`) || !strings.Contains(out, `"revision":2`) {
		t.Fatalf("after rm: %v\n%s", err, out)
	}
}
