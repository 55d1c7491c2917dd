package main

import (
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

// push --sync carries an overlay with its description, and a change of the overlay alone is
// a change like any other: in the security diff, live as a new version.
func TestPushSyncCarriesOverlays(t *testing.T) {
	desc := "openapi: 3.1.0\ninfo: {title: A, version: 1.0.0}\npaths:\n  /x:\n    get: {operationId: x, responses: {\"200\": {description: ok}}}\n"
	overlay := func(security string) string {
		return "overlay: 1.0.0\ninfo: {title: policy, version: 1.0.0}\nextends: a.yaml\nactions:\n  - target: $\n    update:\n" +
			"      x-specgate: {service: a, backend: \"http://127.0.0.1:9\", basePath: /a}\n      security: " + security + "\n" +
			"      components: {securitySchemes: {oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: \"https://a.test/token\", scopes: {read: r}}}}}}\n"
	}
	write := func(dir, overlayText string) {
		for name, content := range map[string]string{"a.yaml": desc, "a.overlay.yaml": overlayText} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	live := t.TempDir()
	write(live, overlay(`[{oauth: [read]}]`))
	cfg := config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"}
	cp := testxds.Start(t, xds.Options{SpecDir: live, Gateway: cfg, AdminToken: "t0k", ListenAddress: "127.0.0.1",
		Debounce: 10 * time.Millisecond, MaxSpecBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, "127.0.0.1:0", "127.0.0.1:0")
	next := t.TempDir()
	write(next, overlay(`[]`))
	out, _, err := run(t, "push", "--server", cp.API, "--token", "t0k", "--sync", next, "--allow-risky")
	if err != nil || !strings.Contains(out, "became anonymous") {
		t.Fatalf("push --sync of an overlay that opens the route: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(live, "a.overlay.yaml"))
	if err != nil || !strings.Contains(string(got), "security: []") {
		t.Errorf("the spec store holds the overlay: %v %s", err, got)
	}
}
