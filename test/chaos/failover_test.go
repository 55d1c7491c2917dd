package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

// replicatedRedis is a replicated Redis a stack runs on, and the faults the test injects.
type replicatedRedis struct {
	url string
	// killPrimary kills the primary (of the revocation set); failedOver then reports
	// whether a replica has taken its place.
	killPrimary func() (failedOver func() bool)
	// shardDown, when set, takes down for good what is left of the killed primary's shard.
	shardDown func()
}

var replicated = []struct {
	name  string
	start func(t *testing.T) replicatedRedis
}{
	{"sentinel", func(t *testing.T) replicatedRedis {
		st := testredis.StartSentinels(t, 1)
		return replicatedRedis{url: st.URL(), killPrimary: func() func() bool {
			old := st.Primary.Addr
			st.Primary.Stop()
			return func() bool {
				a, err := st.PrimaryAddr(context.Background())
				return err == nil && a != old
			}
		}}
	}},
	{"cluster", func(t *testing.T) replicatedRedis {
		c := testredis.StartCluster(t, 3, 1)
		// The master of the revocation set: a revocation answered 200 just before must
		// survive its death. (The rate-limit counters of /shop/limited may live on another
		// shard; the test asserts 429s after the failover either way.)
		owner := c.Owner(t, "specgate:revocations")
		replica := c.Replicas[owner]
		return replicatedRedis{url: c.URL(), killPrimary: func() func() bool {
			c.Masters[owner].Stop()
			rdb := redis.NewClient(&redis.Options{Addr: replica.Addr})
			t.Cleanup(func() { rdb.Close() })
			return func() bool {
				role, err := rdb.Do(context.Background(), "ROLE").Slice()
				return err == nil && len(role) > 0 && role[0] == "master"
			}
		}, shardDown: replica.Stop}
	}},
}

// Scenario 4b. The Redis primary killed -9 under load, behind Sentinel and on a Redis Cluster
// (the master of the revocation set). A revocation the API confirmed just before the kill is
// never lost: refused through the gateway in every phase, and by an authz replica that starts
// after the failover and loads the set from Redis. Valid tokens pass throughout (authz checks
// from its local set); the revocation API answers 503 while there is no primary, never a
// false 200; revocations and rate limits work again within seconds of the failover.
func TestRedisPrimaryFailover(t *testing.T) {
	for _, topo := range replicated {
		t.Run(topo.name, func(t *testing.T) {
			rr := topo.start(t)
			b := e2e.NewBackend(t, "shop")
			s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec},
				Vars: map[string]string{"PORT": b.Port(), "LIMIT": perSecond}, Configure: tolerant, RedisURL: rr.url})
			alice, mallory, eve := s.Token("alice", "orders:read"), s.Token("mallory", "orders:read"), s.Token("eve", "orders:read")
			revokeNow(t, s, mallory)

			l := startLoad(t, loadRPS,
				target{name: "valid", url: s.Public + "/shop/orders", token: alice},
				target{name: "revoked", url: s.Public + "/shop/orders", token: mallory},
				target{name: "limited", url: s.Public + "/shop/limited"})
			l.hold(phaseTime)

			// Confirmed, then the primary dies at once: the confirmation must hold.
			if code, body := revoke(t, s.Authz[0].HTTP, eve); code != 200 {
				t.Fatalf("revoke before the kill: %d %s", code, body)
			}
			var failedOver func() bool
			l.inject("killing", func() { failedOver = rr.killPrimary() })
			l.setPhase("failover")
			during := map[int]int{}
			failover := testutil.Eventually(t, 30*time.Second, "a replica promoted", func() bool {
				// The new primary's 200, or a 503 that says nothing was revoked (or, when the
				// primary died with the write sent, that it may or may not be stored).
				if code, body := revoke(t, s.Authz[0].HTTP, s.Token("trudy", "orders:read")); code == 200 ||
					code == 503 && (strings.Contains(body, "nothing was revoked") || strings.Contains(body, "may or may not be stored")) {
					during[code]++
				} else {
					t.Errorf("revoke during the failover: %d %s", code, body)
				}
				return failedOver()
			})
			l.setPhase("recovering")
			revokes := testutil.Eventually(t, 30*time.Second, "the revocation API answers 200 again", func() bool {
				code, _ := revoke(t, s.Authz[0].HTTP, s.Token("trudy", "orders:read"))
				return code == 200
			})
			limits := testutil.Eventually(t, 30*time.Second, "429 again after the failover", func() bool {
				return l.statuses("recovering", "limited")[429] > 0
			})
			// Recovery can take one load tick: keep the phase until every target was asked in
			// it, so that the checks below judge each one (the figures above are taken).
			testutil.Eventually(t, 5*time.Second, "every target asked while recovering", func() bool {
				return l.total("recovering", "valid") > 0 && l.total("recovering", "revoked") > 0 && l.total("recovering", "limited") > 0
			})
			t.Logf("replica promoted %s after the kill; then revocations answered 200 within %s and 429s within %s; revoke calls during the failover: %v",
				failover.Round(time.Millisecond), revokes.Round(time.Millisecond), max(revokes, limits).Round(time.Millisecond), during)
			if revokes > 10*time.Second || limits > 10*time.Second {
				t.Errorf("revocations back %s and rate limits %s after the failover, want within 10s", revokes, limits)
			}
			l.setPhase("failed-over")
			l.hold(phaseTime)

			// A replica of authz that starts now loads the set from the new primary.
			l.inject("authz-restart", s.Authz[0].Kill)
			s.Authz[0].Start()
			s.Authz[0].WaitReady("/readyz")
			testutil.Eventually(t, 10*time.Second, "200 again after the authz restart", func() bool { return get(t, s.Public+"/shop/orders", alice) == 200 })
			l.setPhase("after")
			l.hold(phaseTime)
			if rr.shardDown != nil {
				// The shard that holds the revocations loses its last node: with
				// cluster-require-full-coverage (the default) the whole cluster stops
				// taking writes. Revocations answer 503; rate limits fail open and say so.
				rlMetrics := "http://" + s.RateLimit[0].HTTP + "/metrics"
				open0, _ := sum(testutil.Metrics(t, rlMetrics), "specgate_ratelimit_fail_open_total")
				l.inject("shard-going", rr.shardDown)
				l.hold(2 * time.Second) // the cluster marks the slots failed (node timeout 1s), the limiter's window ends
				l.setPhase("shard-down")
				if code, body := revoke(t, s.Authz[0].HTTP, s.Token("oscar", "orders:read")); code != 503 || !strings.Contains(body, "nothing was revoked") {
					t.Errorf("revoke with the shard down: %d %s, want 503 saying nothing was revoked", code, body)
				}
				l.hold(phaseTime)
				open1, _ := sum(testutil.Metrics(t, rlMetrics), "specgate_ratelimit_fail_open_total")
				t.Logf("shard down: specgate_ratelimit_fail_open_total +%v", open1-open0)
				if open1 <= open0 {
					t.Errorf("specgate_ratelimit_fail_open_total did not rise with the shard down (%v → %v)", open0, open1)
				}
			}
			l.halt()
			l.report()

			for _, tok := range []string{mallory, eve} {
				if code := get(t, s.Public+"/shop/orders", tok); code != 401 {
					t.Errorf("a token revoked before the failover answered %d after it and an authz restart, want 401", code)
				}
			}
			for _, ph := range []string{"up", "killing", "failover", "recovering", "failed-over", "after"} {
				l.only(ph, "revoked", 401)
			}
			for _, ph := range []string{"up", "failover", "recovering", "failed-over", "after"} {
				l.only(ph, "valid", 200)
			}
			l.never("authz-restart", "revoked", 200)
			l.only("after", "limited", 200, 429)
			if rr.shardDown != nil {
				l.only("shard-down", "valid", 200)
				l.only("shard-down", "revoked", 401)
				l.only("shard-down", "limited", 200)
			}
		})
	}
}
