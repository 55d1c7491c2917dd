package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// A config Envoy rejects (here a route regex RE2 cannot compile, which protobuf validation
// lets through) comes back as a NACK: counted per node and type, logged with Envoy's error;
// when the node's stream closes its ACK series go and the NACK stays.
// The server never publishes such a snapshot itself; the test sets it on the cache directly.
func TestNACKIsCountedAndLoggedWithEnvoysError(t *testing.T) {
	dir := t.TempDir()
	spec := "openapi: 3.1.0\ninfo: {title: alpha, version: '1'}\nx-specgate: {service: alpha, backend: 'http://127.0.0.1:1'}\nsecurity: []\npaths:\n  /a:\n    get: {operationId: a, responses: {'200': {description: ok}}}\n"
	if err := os.WriteFile(filepath.Join(dir, "alpha.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"} // the test backends
	cfg.Listeners.Public, cfg.Listeners.Internal = uint32(testutil.FreePort(t)), uint32(testutil.FreePort(t))
	logs := &testenvoy.LogBuffer{}
	s, err := New(Options{SpecDir: dir, Gateway: cfg, ListenAddress: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, gl, hl) }()
	t.Cleanup(func() { cancel(); <-done })

	admin := testutil.FreeAddr(t)
	boot, err := translate.ADSBootstrap(translate.BootstrapOptions{NodeID: "envoy-nack", AdminAddress: admin}, gl.Addr().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	y, _ := translate.YAML(boot)
	p := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(p, y, 0o644); err != nil {
		t.Fatal(err)
	}
	envoy := testenvoy.Start(t, p, admin)
	metricsURL := "http://" + hl.Addr().String() + "/metrics"
	waitForSeries(t, metricsURL, `specgate_xds_acks_total{node="envoy-nack",type="envoy.config.route.v3.RouteConfiguration"}`)
	good := fmt.Sprintf(`specgate_xds_acked_version_info{node="envoy-nack",type="envoy.config.route.v3.RouteConfiguration",version=%q} 1`, s.Version())
	waitForSeries(t, metricsURL, good)

	// The live snapshot, with one route's matcher replaced by an unclosed regex group.
	live, err := s.cache.GetSnapshot(fleet{}.ID(nil))
	if err != nil {
		t.Fatal(err)
	}
	res := map[resource.Type][]types.Resource{}
	for _, typ := range []resource.Type{resource.ListenerType, resource.ClusterType, resource.RateLimitConfigType} {
		for _, r := range live.GetResources(typ) {
			res[typ] = append(res[typ], r)
		}
	}
	for _, r := range live.GetResources(resource.RouteType) {
		rc := proto.Clone(r.(*routev3.RouteConfiguration)).(*routev3.RouteConfiguration)
		rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "([unclosed"}}
		res[resource.RouteType] = append(res[resource.RouteType], rc)
	}
	bad, err := cache.NewSnapshot("bad-version", res)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), fleet{}.ID(nil), bad); err != nil {
		t.Fatal(err)
	}
	waitForSeries(t, metricsURL, `specgate_xds_nacks_total{node="envoy-nack",type="envoy.config.route.v3.RouteConfiguration"}`)
	if m := testutil.Scrape(t, metricsURL); !strings.Contains(m, good) {
		t.Errorf("after the NACK the node's acknowledged version should still be the good one:\n%s", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "config rejected by node") || !strings.Contains(logs.String(), "unclosed") {
		if time.Now().After(deadline) {
			t.Fatalf("NACK not logged with Envoy's error detail:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The Envoy goes (a pod scaled away): its ACK series go with its stream, its NACK stays.
	envoy.Stop()
	acked := `specgate_xds_acks_total{node="envoy-nack"`
	waitForSeries(t, metricsURL, "specgate_xds_connected_streams 0")
	if m := testutil.Scrape(t, metricsURL); strings.Contains(m, acked) || strings.Contains(m, `specgate_xds_acked_version_info{node="envoy-nack"`) ||
		!strings.Contains(m, `specgate_xds_nacks_total{node="envoy-nack"`) {
		t.Fatalf("after the stream closed: want no %s series and the NACK kept:\n%s", acked, m)
	}
}

// waitForSeries waits until the metrics page at url shows series.
func waitForSeries(t *testing.T, url, series string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "metric "+series, func() bool { return strings.Contains(testutil.Body(url), series) })
}
