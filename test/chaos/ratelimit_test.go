package chaos

import (
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Scenario 2. kill -9 the rate-limit service under load: Envoy fails open (every request of a
// limited route passes, no 429) and counts the failed calls in its ratelimit stats; restarted,
// the limit applies again.
func TestKillRateLimit(t *testing.T) {
	s, _ := shopStack(t)
	alice := s.Token("alice", "orders:read")
	l := startLoad(t, loadRPS,
		target{name: "limited", url: s.Public + "/shop/limited"},
		target{name: "orders", url: s.Public + "/shop/orders", token: alice})
	l.hold(phaseTime)
	before := envoyStats(t, s.Envoy.AdminAddr, `\.ratelimit\.(ok|over_limit|error|failure_mode_allowed)$`)

	l.inject("killing", s.RateLimit[0].Kill)
	l.setPhase("ratelimit-down")
	l.hold(phaseTime)
	// Read the stats once the down phase's requests have finished: new ones count as
	// "restarting" (the service is still down, so they only add errors), none is missed.
	l.setPhase("restarting")
	time.Sleep(200 * time.Millisecond)
	down := envoyStats(t, s.Envoy.AdminAddr, `\.ratelimit\.(ok|over_limit|error|failure_mode_allowed)$`)
	s.RateLimit[0].Start()
	s.RateLimit[0].WaitReady("/readyz")
	took := testutil.Eventually(t, 10*time.Second, "429 again after the restart", func() bool { return l.statuses("restarting", "limited")[429] > 0 })
	t.Logf("first 429 %s after /readyz of the restarted ratelimit", took)
	l.setPhase("restarted")
	l.hold(phaseTime)
	l.halt()
	l.report()
	t.Logf("envoy ratelimit stats before the kill: %s", fmtMap(before))
	t.Logf("envoy ratelimit stats while down:      %s", fmtMap(down))

	// Up: the limit holds (some 429s); down: fail open; restarted: the limit holds again.
	l.only("up", "limited", 200, 429)
	if l.statuses("up", "limited")[429] == 0 {
		t.Error("no 429 before the kill: the limit is not enforced, the scenario proves nothing")
	}
	l.only("ratelimit-down", "limited", 200)
	l.only("restarted", "limited", 200, 429)
	if l.statuses("restarted", "limited")[429] == 0 {
		t.Error("no 429 after the restart")
	}
	for _, ph := range []string{"up", "killing", "ratelimit-down", "restarting", "restarted"} {
		l.only(ph, "orders", 200)
	}
	// Envoy counts each failed call (error) and each request it let through because of it.
	errs := statsSum(down, ".ratelimit.error") - statsSum(before, ".ratelimit.error")
	allowed := statsSum(down, ".ratelimit.failure_mode_allowed") - statsSum(before, ".ratelimit.failure_mode_allowed")
	t.Logf("while down: ratelimit.error +%d, ratelimit.failure_mode_allowed +%d", errs, allowed)
	if n := int64(l.total("ratelimit-down", "limited")); errs < n || allowed < n {
		t.Errorf("Envoy counted %d errors and %d fail-open passes for %d requests while the service was down", errs, allowed, n)
	}
}
