package envoy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/testutil"
)

// Envoy's admin takes mutations from anyone who reaches it, so it binds loopback only, and the
// kubelet and Prometheus get what they need through the stats listener: GET /ready and
// /stats/prometheus, and nothing else of the admin, against the real Envoy.
func TestStatsListenerServesOnlyProbesAndMetrics(t *testing.T) {
	specs := alphaSpecs(t)
	stats := testutil.FreeAddr(t)
	gw := startStatic(t, specs, e2e.StartAllowAll(t).Addr, nil, func(o *translate.BootstrapOptions) { o.StatsAddress = stats })
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+stats+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("GET", "/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
		t.Errorf("GET /ready: %d %q", code, body)
	}
	if code, body := get("GET", "/stats/prometheus"); code != 200 || !strings.Contains(body, "envoy_server_live") {
		t.Errorf("GET /stats/prometheus: %d", code)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/quitquitquit"}, {"POST", "/drain_listeners"}, {"POST", "/logging?level=trace"},
		{"GET", "/config_dump"}, {"GET", "/stats"}, {"GET", "/server_info"}, {"POST", "/ready"},
	} {
		if code, _ := get(c.method, c.path); code != 404 {
			t.Errorf("%s %s through the stats listener: %d, want 404", c.method, c.path, code)
		}
	}
	if code, _ := get("GET", "/ready"); code != 200 {
		t.Fatalf("Envoy stopped after the refused mutations: /ready %d", code)
	}
	if resp, err := http.Get(gw.pub + "/alpha/things"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the gateway itself: %v", err)
	} else {
		resp.Body.Close()
	}
}

// A bootstrap whose admin would listen beyond loopback is refused, static or ADS.
func TestAdminBindsLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(`openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {backend: "http://a.shop.svc.cluster.local:8080"}
security: []
paths: {/a: {get: {operationId: a, responses: {"200": {description: ok}}}}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	gw, diags := compiler.Compile(dir, compiler.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(gw, translate.Options{InlineRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"0.0.0.0:9901", "10.0.0.5:9901", "[::]:9901"} {
		if _, err := translate.Bootstrap(res, translate.BootstrapOptions{AdminAddress: addr}); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("static bootstrap, admin %s: %v", addr, err)
		}
		if _, err := translate.ADSBootstrap(translate.BootstrapOptions{AdminAddress: addr}, "127.0.0.1:18000", false); err == nil {
			t.Errorf("ADS bootstrap, admin %s accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:9901", "[::1]:9901"} {
		if _, err := translate.Bootstrap(res, translate.BootstrapOptions{AdminAddress: addr}); err != nil {
			t.Errorf("admin %s: %v", addr, err)
		}
	}
}

// In deploy/ the admin listens on a Unix socket (mode 0600): nothing reaches it over the
// network, not even a spec whose backend name resolves to 127.0.0.1 at run time; the stats
// listener still serves /ready and /stats/prometheus from it.
func TestAdminOnAUnixSocket(t *testing.T) {
	specs := alphaSpecs(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	stats := testutil.FreeAddr(t)
	startStatic(t, specs, e2e.StartAllowAll(t).Addr, nil, func(o *translate.BootstrapOptions) {
		o.AdminAddress, o.StatsAddress = "unix:"+sock, stats
	})
	for _, path := range []string{"/ready", "/stats/prometheus"} {
		if resp, err := http.Get("http://" + stats + path); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s through the stats listener: %v", path, err)
		} else {
			resp.Body.Close()
		}
	}
	info, err := os.Stat(sock)
	if err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o600 {
		t.Fatalf("the admin socket %s: %v %v, want a socket with mode 0600", sock, info, err)
	}
	unix := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := unix.Get("http://admin/server_info")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the admin over its socket: %v", err)
	}
	resp.Body.Close()
	if _, err := translate.Bootstrap(&translate.Resources{}, translate.BootstrapOptions{AdminAddress: "unix:relative.sock"}); err == nil {
		t.Error("a relative socket path was accepted")
	}
}

// alphaSpecs is a spec directory with one anonymous service on a test backend.
func alphaSpecs(t *testing.T) string {
	backend := e2e.NewBackend(t, "alpha")
	specs := t.TempDir()
	e2e.WriteSpec(t, specs, "alpha.yaml", `openapi: 3.1.0
info: {title: Alpha, version: 1.0.0}
x-specgate: {backend: "http://127.0.0.1:{{PORT}}", basePath: /alpha}
security: []
paths:
  /things: {get: {operationId: list, responses: {"200": {description: ok}}}}
`, map[string]string{"PORT": backend.Port()})
	return specs
}
