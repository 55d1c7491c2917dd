package xds_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
	"github.com/specgate/specgate/test/harness/testxds"
	"github.com/specgate/specgate/xds"
)

const adminToken = "test-admin-token"

const serviceTmpl = `openapi: 3.1.0
info: {title: {{NAME}}, version: 1.0.0}
x-specgate: {service: {{NAME}}, backend: "http://127.0.0.1:{{PORT}}", basePath: /{{NAME}}}
security: []
paths:
  /things:
    get: {operationId: listThings, responses: {"200": {description: ok}}}
`

// gateway is a control plane, an allow-all authz and backends on loopback ports.
type gateway struct {
	t     *testing.T
	specs string
	cfg   config.Gateway
	cp    *testxds.ControlPlane
	authz *e2e.AllowAll
	opts  xds.Options
}

func newGateway(t *testing.T, specs string, configure ...func(*config.Gateway)) *gateway {
	g := &gateway{t: t, specs: specs, cfg: config.Default(), authz: e2e.StartAllowAll(t)}
	g.cfg.Backends.Allow = []string{"127.0.0.0/8"} // the test backends
	g.cfg.Listeners.Public, g.cfg.Listeners.Internal = uint32(testutil.FreePort(t)), uint32(testutil.FreePort(t))
	for _, f := range configure {
		f(&g.cfg)
	}
	g.opts = xds.Options{
		SpecDir: specs, Gateway: g.cfg, AdminToken: adminToken, ListenAddress: "127.0.0.1",
		Debounce: 50 * time.Millisecond, MaxSpecBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	// Ports below the kernel's ephemeral range: a restart binds them again, and an outgoing
	// connection of any process may take a port the kernel chose (bind: address in use).
	g.start(testutil.FreeAddr(t), testutil.FreeAddr(t))
	return g
}

func (g *gateway) start(grpcAddr, httpAddr string) {
	g.t.Helper()
	g.cp = testxds.Start(g.t, g.opts, grpcAddr, httpAddr)
}

// kill stops the control plane (Envoys keep their last config). Idempotent.
func (g *gateway) kill() {
	if err := g.cp.Stop(); err != nil {
		g.t.Logf("control plane stopped: %v", err)
	}
}

// envoy starts a real Envoy on ADS with its own node id and admin port.
func (g *gateway) envoy(node string, delta bool) *testenvoy.Envoy {
	g.t.Helper()
	admin := testutil.FreeAddr(g.t)
	boot, err := translate.ADSBootstrap(translate.BootstrapOptions{NodeID: node, AdminAddress: admin, AuthzAddress: g.authz.Addr,
		RateLimitAddr: testutil.FreeAddr(g.t)}, g.cp.GRPC, delta)
	if err != nil {
		g.t.Fatal(err)
	}
	y, err := translate.YAML(boot)
	if err != nil {
		g.t.Fatal(err)
	}
	p := filepath.Join(g.t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(p, y, 0o644); err != nil {
		g.t.Fatal(err)
	}
	return testenvoy.Start(g.t, p, admin)
}

func (g *gateway) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", g.cfg.Listeners.Public, path)
}

// backendOf answers which backend served GET path, or the status when none did.
func (g *gateway) backendOf(path string) string {
	resp, err := http.Get(g.url(path))
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	var body struct{ Backend string }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &body) != nil {
		return strconv.Itoa(resp.StatusCode)
	}
	return body.Backend
}

// eventually polls until backendOf(path) == want, and returns how long it took.
func (g *gateway) eventually(path, want string, within time.Duration) time.Duration {
	g.t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < within {
		if got = g.backendOf(path); got == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.t.Fatalf("GET %s: %s after %s, want %s", path, got, within, want)
	return 0
}

func (g *gateway) do(method, path, token string, body []byte) (int, []byte) {
	g.t.Helper()
	req, _ := http.NewRequest(method, g.cp.API+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// alphaServed starts a control plane on a directory holding service alpha (backend a), one
// Envoy, and waits until alpha answers; b is a second backend for the test to move to.
func alphaServed(t *testing.T) (g *gateway, dir string, a, b *e2e.Backend) {
	a, b = e2e.NewBackend(t, "a"), e2e.NewBackend(t, "b")
	dir = t.TempDir()
	e2e.WriteSpec(t, dir, "alpha.yaml", string(spec("alpha", a)), nil)
	g = newGateway(t, dir)
	g.envoy("envoy-1", false)
	g.eventually("/alpha/things", "a", 10*time.Second)
	return g, dir, a, b
}

func spec(name string, b *e2e.Backend) []byte {
	return []byte(strings.NewReplacer("{{NAME}}", name, "{{PORT}}", b.Port()).Replace(serviceTmpl))
}

func TestPushGoesLiveAndMoves(t *testing.T) {
	g, dir, a, b := alphaServed(t)

	// A new service answers within a second of its push.
	if code, body := g.do("PUT", "/v1/specs/beta?allowRisky=true", adminToken, spec("beta", b)); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	if d := g.eventually("/beta/things", "b", time.Second); d > time.Second {
		t.Fatalf("push took %s to go live", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "beta.yaml")); err != nil {
		t.Fatalf("pushed spec not written to the directory: %v", err)
	}
	// Deleted: 404.
	if code, body := g.do("DELETE", "/v1/specs/beta?allowRisky=true", adminToken, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	g.eventually("/beta/things", "404", time.Second)
	// A changed backend moves traffic.
	if code, body := g.do("PUT", "/v1/specs/alpha?allowRisky=true", adminToken, spec("alpha", b)); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	g.eventually("/alpha/things", "b", time.Second)

	// Push → live latency over 20 pushes, alternating the backend.
	var lat []time.Duration
	for i := range 20 {
		target := []*e2e.Backend{a, b}[i%2]
		start := time.Now()
		if code, body := g.do("PUT", "/v1/specs/alpha?allowRisky=true", adminToken, spec("alpha", target)); code != 200 {
			t.Fatalf("push %d: %d %s", i, code, body)
		}
		g.eventually("/alpha/things", target.Name, 5*time.Second)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)-1]
	t.Logf("push→live over %d pushes: p50 %s, p99 (max) %s", len(lat), p50, p99)
	if p99 > time.Second {
		t.Errorf("push→live p99 %s exceeds 1s", p99)
	}
}

func TestRefusedPushChangesNothing(t *testing.T) {
	a := e2e.NewBackend(t, "a")
	dir := t.TempDir()
	orig := spec("alpha", a)
	e2e.WriteSpec(t, dir, "alpha.yaml", string(orig), nil)
	g := newGateway(t, dir)
	g.envoy("envoy-1", false)
	g.eventually("/alpha/things", "a", 10*time.Second)
	version := g.cp.Version()

	broken := bytes.Replace(orig, []byte("listThings"), []byte("listThings, x-specgate: {rateLimits: [{requests: 0, per: second, key: ip}]}"), 1)
	code, body := g.do("PUT", "/v1/specs/alpha?allowRisky=true", adminToken, broken)
	if code != 422 {
		t.Fatalf("broken push: %d %s", code, body)
	}
	var refused xds.RefusedError
	const want = "alpha.yaml:7: GET /things: x-specgate.rateLimits[0]: requests must be > 0"
	if err := json.Unmarshal(body, &refused); err != nil || len(refused.Diagnostics) == 0 || len(refused.Lines) == 0 ||
		!strings.HasPrefix(refused.Diagnostics[0].String(), want) || !strings.HasPrefix(refused.Lines[0], want) {
		t.Fatalf("422 body does not carry the diagnostics: %s", body)
	}
	for _, tc := range []struct {
		name, token string
		body        []byte
		want        int
	}{
		{"no token", "", spec("alpha", a), 401},
		{"wrong token", "nope", spec("alpha", a), 401},
		{"oversized", adminToken, bytes.Repeat([]byte("#"), 2<<20), 413},
	} {
		if code, body := g.do("PUT", "/v1/specs/alpha?allowRisky=true", tc.token, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if code, _ := g.do("GET", "/v1/specs", "", nil); code != 401 {
		t.Errorf("listing specs without a token: %d", code)
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, "alpha.yaml"))
	if !bytes.Equal(onDisk, orig) {
		t.Error("a refused push changed the file on disk")
	}
	if g.cp.Version() != version {
		t.Error("a refused push changed the live version")
	}
	if got := g.backendOf("/alpha/things"); got != "a" {
		t.Errorf("after refused pushes: %s", got)
	}
}

// With --envoy-validate every candidate passes the real Envoy's validation before it is served.
func TestPushValidatedByEnvoy(t *testing.T) {
	a, b := e2e.NewBackend(t, "a"), e2e.NewBackend(t, "b")
	dir := t.TempDir()
	e2e.WriteSpec(t, dir, "alpha.yaml", string(spec("alpha", a)), nil)
	g := newGateway(t, dir)
	g.kill()
	g.opts.EnvoyBin = testenvoy.Binary(t)
	g.start(testutil.FreeAddr(t), testutil.FreeAddr(t))
	g.envoy("envoy-1", false)
	g.eventually("/alpha/things", "a", 10*time.Second)
	start := time.Now()
	if code, body := g.do("PUT", "/v1/specs/beta?allowRisky=true", adminToken, spec("beta", b)); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	g.eventually("/beta/things", "b", 2*time.Second)
	t.Logf("push→live with envoy --mode validate: %s", time.Since(start))
}

func TestWatchedDirectory(t *testing.T) {
	g, dir, _, b := alphaServed(t)
	version := g.cp.Version()

	// A broken file is reported and the last good snapshot stays.
	e2e.WriteSpec(t, dir, "broken.yaml", "openapi: 3.1.0\ninfo: {title: x\n", nil)
	time.Sleep(300 * time.Millisecond) // > debounce: give the watcher its chance to (wrongly) act
	if g.cp.Version() != version || g.backendOf("/alpha/things") != "a" {
		t.Fatal("a broken file changed the live config")
	}
	os.Remove(filepath.Join(dir, "broken.yaml"))
	// A good new file goes live.
	e2e.WriteSpec(t, dir, "beta.yaml", string(spec("beta", b)), nil)
	g.eventually("/beta/things", "b", 2*time.Second)
}

// The kubelet updates a mounted ConfigMap by writing a new timestamped directory and swapping
// the ..data symlink to it in one rename; the spec files are links through ..data.
func TestConfigMapSymlinkSwap(t *testing.T) {
	a, b := e2e.NewBackend(t, "a"), e2e.NewBackend(t, "b")
	dir := t.TempDir()
	writeVersion := func(stamp string, backend *e2e.Backend) {
		vdir := filepath.Join(dir, stamp)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		e2e.WriteSpec(t, vdir, "alpha.yaml", string(spec("alpha", backend)), nil)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(stamp, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2026_11_26_10_00_00.000000001", a)
	if err := os.Symlink(filepath.Join("..data", "alpha.yaml"), filepath.Join(dir, "alpha.yaml")); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, dir)
	g.envoy("envoy-1", false)
	g.eventually("/alpha/things", "a", 10*time.Second)

	writeVersion("..2026_11_26_10_05_00.000000002", b)
	g.eventually("/alpha/things", "b", 2*time.Second)
}

// What was pushed survives a restart (it was written to the directory), with the same
// version; Envoy serves throughout and reconnects without a NACK.
func TestRestartKeepsVersionAndEnvoyServes(t *testing.T) {
	g, _, _, b := alphaServed(t)
	env := g.envoy("envoy-2", false)
	if code, body := g.do("PUT", "/v1/specs/beta?allowRisky=true", adminToken, spec("beta", b)); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	g.eventually("/beta/things", "b", 2*time.Second)
	version := g.cp.Version()
	grpcAddr, httpAddr := g.cp.GRPC, strings.TrimPrefix(g.cp.API, "http://")

	g.kill()
	for range 20 {
		if got := g.backendOf("/alpha/things"); got != "a" {
			t.Fatalf("with the control plane down: %s", got)
		}
	}
	g.start(grpcAddr, httpAddr)
	if g.cp.Version() != version {
		t.Fatalf("restart changed the version: %s → %s", version, g.cp.Version())
	}
	// Envoy reconnects and ACKs the same version: no NACK, traffic unaffected.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(testutil.Scrape(t, g.cp.API+"/metrics"), `specgate_xds_acks_total{node="envoy-2"`) {
		if time.Now().After(deadline) {
			t.Fatalf("Envoy did not reconnect to the restarted control plane:\n%s", env.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := testutil.Scrape(t, g.cp.API+"/metrics"); strings.Contains(m, "specgate_xds_nacks_total{") {
		t.Fatalf("NACKs after restart:\n%s", m)
	}
	if got := g.backendOf("/alpha/things"); got != "a" {
		t.Fatalf("after restart: %s", got)
	}
	if got := g.backendOf("/beta/things"); got != "b" {
		t.Fatalf("pushed service after restart: %s", got)
	}
}

// Two Envoys with different node ids, one on delta xDS, get the same version and serve it.
func TestTwoEnvoysSameVersionOneDelta(t *testing.T) {
	a, b := e2e.NewBackend(t, "a"), e2e.NewBackend(t, "b")
	dir := t.TempDir()
	e2e.WriteSpec(t, dir, "alpha.yaml", string(spec("alpha", a)), nil)
	g := newGateway(t, dir)
	sotw := g.envoy("envoy-sotw", false)
	delta := g.envoy("envoy-delta", true)
	g.eventually("/alpha/things", "a", 10*time.Second)
	if code, body := g.do("PUT", "/v1/specs/beta?allowRisky=true", adminToken, spec("beta", b)); code != 200 {
		t.Fatalf("push: %d %s", code, body)
	}
	want := g.cp.Version()
	// SotW stamps every type with the snapshot version; delta sends only what changed, so its
	// LDS version may stay older. Both must hold the new routes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := sotw.Stat("listener_manager.lds.version_text")
		if strings.Trim(v, `"`) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SotW Envoy has LDS version %s, want %s", v, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The listeners share one route table: its RDS stats are under the stat prefix of the
	// listener that subscribed first, either of the two.
	routeVersion := func(env *testenvoy.Envoy) string {
		for _, l := range []string{"public", "internal"} {
			if v, _ := env.Stat("http." + l + ".rds.gateway.version_text"); v != "" {
				return strings.Trim(v, `"`)
			}
		}
		return ""
	}
	for _, env := range []*testenvoy.Envoy{sotw, delta} {
		deadline := time.Now().Add(5 * time.Second)
		for routeVersion(env) != want {
			if time.Now().After(deadline) {
				t.Fatalf("Envoy %s has route version %q, want %s", env.AdminAddr, routeVersion(env), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The control plane knows each node is on the new routes (delta ACKs carry only a nonce).
	for _, node := range []string{"envoy-sotw", "envoy-delta"} {
		series := fmt.Sprintf(`specgate_xds_acked_version_info{node=%q,type="envoy.config.route.v3.RouteConfiguration",version=%q} 1`, node, want)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(testutil.Scrape(t, g.cp.API+"/metrics"), series) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s in:\n%s", series, testutil.Scrape(t, g.cp.API+"/metrics"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if m := testutil.Scrape(t, g.cp.API+"/metrics"); strings.Contains(m, `node=""`) {
		t.Errorf("a series lost its node (delta requests after the first carry none):\n%s", m)
	}
	// Both Envoys share the listener port (SO_REUSEPORT); fresh connections reach both.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 40 {
		resp, err := client.Get(g.url("/beta/things"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	for _, env := range []*testenvoy.Envoy{sotw, delta} {
		if n, _ := env.Stat("http.public.downstream_rq_2xx"); n == "" || n == "0" {
			t.Errorf("Envoy %s served no request", env.AdminAddr)
		}
	}
}

// Zero failed requests while 10 pushes happen under a steady load of 300 requests/s for 10 s.
func TestNoFailedRequestsDuringPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	g, _, a, b := alphaServed(t)

	const rps, seconds = 300, 10
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rps)
	defer tick.Stop()
	pushes := make(chan struct{})
	go func() {
		defer close(pushes)
		for i := range 10 {
			time.Sleep(seconds * time.Second / 11)
			target := []*e2e.Backend{b, a}[i%2]
			if code, body := g.do("PUT", "/v1/specs/alpha?allowRisky=true", adminToken, spec("alpha", target)); code != 200 {
				t.Errorf("push %d: %d %s", i, code, body)
			}
		}
	}()
	for range rps * seconds {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(1)
			resp, err := client.Get(g.url("/alpha/things"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	wg.Wait()
	<-pushes
	t.Logf("%d requests during 10 pushes: %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during pushes; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
}
