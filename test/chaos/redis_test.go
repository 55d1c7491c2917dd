package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Scenario 4. Redis down and back under load. Authz keeps checking from its local set (valid
// 200, revoked-before 401), the revocation API answers 503 (nothing stored, so nothing
// claimed), the rate limiter fails open and counts it; after the restart (same port, same
// AOF) revocations work again and the limits apply again.
func TestRedisDownAndBack(t *testing.T) {
	s, _ := shopStack(t)
	alice, mallory, eve := s.Token("alice", "orders:read"), s.Token("mallory", "orders:read"), s.Token("eve", "orders:read")
	revokeNow(t, s, mallory)
	rlMetrics := "http://" + s.RateLimit[0].HTTP + "/metrics"

	l := startLoad(t, loadRPS,
		target{name: "valid", url: s.Public + "/shop/orders", token: alice},
		target{name: "revoked", url: s.Public + "/shop/orders", token: mallory},
		target{name: "limited", url: s.Public + "/shop/limited"})
	l.hold(phaseTime)
	m0 := testutil.Metrics(t, rlMetrics)

	l.inject("stopping", s.Redis.Stop)
	// A key already over its limit is refused locally until its window (one second) ends:
	// the rate limiter's local cache, by design. Fail-open is asserted after that.
	l.hold(time.Second)
	l.setPhase("redis-down")
	var downRevokes []string
	for range pick(1, 3) {
		start := time.Now()
		code, body := revoke(t, s.Authz[0].HTTP, eve)
		downRevokes = append(downRevokes, fmt.Sprintf("%d in %s", code, time.Since(start).Round(time.Millisecond)))
		if code != 503 || !strings.Contains(body, "nothing was revoked") {
			t.Errorf("revoke with Redis down: %d %s, want 503 saying nothing was revoked", code, body)
		}
	}
	l.hold(phaseTime)
	m1 := testutil.Metrics(t, rlMetrics)

	l.inject("restarting", s.Redis.Restart)
	var tries int
	took := testutil.Eventually(t, 20*time.Second, "revocation API works after the Redis restart", func() bool {
		tries++
		code, _ := revoke(t, s.Authz[0].HTTP, eve)
		return code == 200
	})
	t.Logf("revoke answered 200 %s after Redis came back (%d tries)", took, tries)
	testutil.Eventually(t, 2*time.Second, "the new revocation refused through the gateway", func() bool { return get(t, s.Public+"/shop/orders", eve) == 401 })
	testutil.Eventually(t, 10*time.Second, "429 again after the Redis restart", func() bool { return l.statuses("restarting", "limited")[429] > 0 })
	l.setPhase("redis-back")
	l.hold(phaseTime)
	l.halt()
	l.report()

	failOpen0, _ := sum(m0, "specgate_ratelimit_fail_open_total")
	failOpen1, _ := sum(m1, "specgate_ratelimit_fail_open_total")
	errs0, _ := sum(m0, "specgate_ratelimit_store_errors_total")
	errs1, _ := sum(m1, "specgate_ratelimit_store_errors_total")
	t.Logf("revoke while down: %v; ratelimit while down: fail_open_total +%v, store_errors_total +%v", downRevokes, failOpen1-failOpen0, errs1-errs0)
	if failOpen1 <= failOpen0 {
		t.Errorf("specgate_ratelimit_fail_open_total did not rise while Redis was down (%v → %v)", failOpen0, failOpen1)
	}

	for _, ph := range []string{"up", "stopping", "redis-down", "restarting", "redis-back"} {
		l.only(ph, "valid", 200)
		l.only(ph, "revoked", 401)
	}
	l.only("up", "limited", 200, 429)
	l.only("redis-down", "limited", 200)
	l.only("redis-back", "limited", 200, 429)
	for _, ph := range []string{"up", "redis-back"} {
		if l.statuses(ph, "limited")[429] == 0 {
			t.Errorf("phase %s: no 429 on the limited route", ph)
		}
	}
}
