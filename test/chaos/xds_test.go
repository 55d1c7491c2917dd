package chaos

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// readyVersion is the snapshot version the control plane reports on /readyz.
func readyVersion(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var r struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Version == "" {
		t.Fatalf("readyz: %d %v", resp.StatusCode, err)
	}
	return r.Version
}

// Scenario 3. kill -9 the control plane under load: Envoy keeps serving from its last
// config (0 failures); restarted, the control plane serves the same version, Envoy
// reconnects and ACKs, and nobody NACKs.
func TestKillControlPlane(t *testing.T) {
	s, _ := shopStack(t)
	alice := s.Token("alice", "orders:read")
	before := readyVersion(t, s.XDS.HTTP)
	l := startLoad(t, loadRPS,
		target{name: "orders", url: s.Public + "/shop/orders", token: alice},
		target{name: "anonymous", url: s.Public + "/shop/open"})
	l.hold(phaseTime)

	l.inject("killing", s.XDS.Kill)
	l.setPhase("xds-down")
	l.hold(phaseTime)

	l.setPhase("restarting")
	s.XDS.Start()
	s.XDS.WaitReady("/readyz")
	after := readyVersion(t, s.XDS.HTTP)
	metricsURL := "http://" + s.XDS.HTTP + "/metrics"
	var m map[string]float64
	// Envoy (node "stack") and the rate-limit replica (its RateLimitConfig stream) reconnect
	// with their own backoff.
	took := testutil.Eventually(t, 45*time.Second, "ACKs from Envoy (node stack) and the ratelimit replica after the restart", func() bool {
		m = testutil.Metrics(t, metricsURL)
		envoy, _ := sum(m, "specgate_xds_acks_total", `node="stack"`, "RouteConfiguration")
		rl, _ := sum(m, "specgate_xds_acks_total", "RateLimitConfig")
		return envoy > 0 && rl > 0
	})
	t.Logf("Envoy and ratelimit ACKed %s after /readyz of the restarted control plane", took)
	l.setPhase("restarted")
	l.hold(phaseTime)
	l.halt()
	l.report()
	m = testutil.Metrics(t, metricsURL)
	for series, v := range m {
		if strings.HasPrefix(series, "specgate_xds_acks_total") {
			t.Logf("%s %v", series, v)
		}
	}
	acks, _ := sum(m, "specgate_xds_acks_total")
	streams, _ := sum(m, "specgate_xds_connected_streams")
	t.Logf("version before %s, after %s; after the restart: acks %v, connected streams %v", before, after, acks, streams)

	if before != after {
		t.Errorf("version changed across the restart: %s → %s", before, after)
	}
	if n, found := sum(m, "specgate_xds_nacks_total"); found {
		t.Errorf("specgate_xds_nacks_total present after the restart (%v)", n)
	}
	for _, ph := range []string{"up", "killing", "xds-down", "restarting", "restarted"} {
		l.only(ph, "orders", 200)
		l.only(ph, "anonymous", 200)
	}
}
