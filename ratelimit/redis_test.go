package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

func redisConfig(url string, failOpen bool) config.Gateway {
	g := config.Default()
	g.RateLimit = config.RateLimit{Store: url, FailOpen: &failOpen}
	return g
}

// TestRedisDown: with Redis killed, failOpen allows and counts, failOpen=false refuses with
// a Retry-After; once Redis is back the limits apply again.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	clock.Set(t0)
	file := writeFile(t, limitsYAML)
	open, cOpen := start(t, Options{Config: redisConfig(srv.URL(), true), LimitsFile: file, Clock: clock})
	_, cClosed := start(t, Options{Config: redisConfig(srv.URL(), false), LimitsFile: file, Clock: clock})
	list := d("route", "orders.list", "limit", "0")
	if r := ask(t, cOpen, list); r.OverallCode != ok || r.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("with Redis: %v", r)
	}

	srv.Stop()
	for range 3 {
		if r := ask(t, cOpen, list); r.OverallCode != ok {
			t.Fatalf("failOpen with Redis down: %v", r)
		}
	}
	if n := metric(t, open.Service(), "specgate_ratelimit_store_errors_total"); n != 3 {
		t.Errorf("store errors = %v, want 3", n)
	}
	if n := metric(t, open.Service(), "specgate_ratelimit_fail_open_total"); n != 3 {
		t.Errorf("fail open = %v, want 3", n)
	}
	if n := metric(t, open.Service(), "specgate_ratelimit_decisions_total", "decision", "fail_open"); n != 3 {
		t.Errorf("fail_open decisions = %v, want 3", n)
	}
	r := ask(t, cClosed, list, d("route", "nope", "limit", "0"))
	if r.OverallCode != over || r.Statuses[0].Code != over || r.Statuses[1].Code != ok {
		t.Fatalf("failOpen=false with Redis down: %v", r)
	}
	if h := r.ResponseHeadersToAdd; len(h) != 1 || h[0].Value != "1" {
		t.Errorf("Retry-After when refusing on a store error: %v", h)
	}

	srv.Restart()
	// Both replicas count again: the one hit before the crash survived in the AOF, so the
	// first answer after recovery is the second and last allowed one, then refusals.
	testutil.Eventually(t, 10*time.Second, "the store to recover", func() bool {
		r := ask(t, cClosed, list)
		return r.Statuses[0].CurrentLimit != nil && r.OverallCode == ok
	})
	for _, c := range []rlsv3.RateLimitServiceClient{cOpen, cClosed} {
		if r := ask(t, c, list); r.OverallCode != over || r.Statuses[0].CurrentLimit == nil {
			t.Fatalf("limit not applied after Redis came back: %v", r)
		}
	}
}

// TestReplicasShareRedis: three services on one Redis, 64 concurrent clients on one key,
// five times the limit demanded in each of five windows. Every window allows at most the
// limit and at least 98% of it. The replicas share one injected clock so that every request
// of a round falls in the round's window.
func TestReplicasShareRedis(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	const (
		replicas = 3
		clients  = 64
		limit    = 200
		demand   = 5 * limit
		windows  = 5
	)
	cfg := routeLimit(limit, rlsconf.RateLimitUnit_SECOND)
	var cs []rlsv3.RateLimitServiceClient
	for range replicas {
		s, c := start(t, Options{Config: redisConfig(srv.URL(), false), Clock: clock})
		if err := s.Service().SetConfig([]*rlsconf.RateLimitConfig{cfg}); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	req := &rlsv3.RateLimitRequest{Domain: policy.Domain, Descriptors: []*rlcommon.RateLimitDescriptor{d("route", "orders.list", "limit", "0")}}
	for w := range windows {
		clock.Set(t0.Add(time.Duration(w)*time.Second + 500*time.Millisecond))
		var allowed, errs atomic.Int64
		var next atomic.Int64
		var wg sync.WaitGroup
		for i := range clients {
			c := cs[i%replicas]
			wg.Go(func() {
				for next.Add(1) <= demand {
					r, err := c.ShouldRateLimit(context.Background(), req)
					switch {
					case err != nil:
						errs.Add(1)
					case r.OverallCode == ok:
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if errs.Load() > 0 {
			t.Fatalf("window %d: %d gRPC errors", w, errs.Load())
		}
		if a := allowed.Load(); a > limit || a < limit*98/100 {
			t.Fatalf("window %d: allowed %d of %d, limit %d", w, a, demand, limit)
		}
	}
}
