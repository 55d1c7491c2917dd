package limiter

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testredis"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// t0 is 10s into a minute window.
var t0 = time.Date(2030, 1, 2, 3, 4, 10, 0, time.UTC)

func one(t *testing.T, l Limiter, h Hit) Result {
	t.Helper()
	res := make([]Result, 1)
	if err := l.DoLimit(context.Background(), []Hit{h}, res); err != nil {
		t.Fatalf("DoLimit: %v", err)
	}
	return res[0]
}

// testWindow checks a fixed window of 3 per minute, exactly, for any store.
func testWindow(t *testing.T, l Limiter, clock *fakeClock, key string) (local int) {
	h := Hit{Key: key, Limit: 3, Window: time.Minute, Hits: 1}
	clock.Set(t0)
	for i, want := range []uint32{2, 1, 0} {
		r := one(t, l, h)
		if r.Over || r.Remaining != want || r.ResetIn != 50*time.Second {
			t.Fatalf("hit %d: got %+v, want remaining %d, reset 50s", i+1, r, want)
		}
	}
	clock.Set(t0.Add(49*time.Second + 500*time.Millisecond)) // last half second of the window
	for range 3 {
		r := one(t, l, h)
		if !r.Over || r.Remaining != 0 || r.ResetIn != 500*time.Millisecond {
			t.Fatalf("over the limit: got %+v", r)
		}
		if r.Local {
			local++
		}
	}
	clock.Set(t0.Add(50 * time.Second)) // the next window starts
	if r := one(t, l, h); r.Over || r.Remaining != 2 || r.ResetIn != time.Minute {
		t.Fatalf("new window: got %+v", r)
	}
	// Hits of more than one count for as many.
	if r := one(t, l, Hit{Key: key, Limit: 3, Window: time.Minute, Hits: 3}); !r.Over {
		t.Fatalf("1+3 hits of 3 allowed: %+v", r)
	}
	// A config update raises the limit: the key counts on, whatever was cached.
	if r := one(t, l, Hit{Key: key, Limit: 5, Window: time.Minute, Hits: 1}); r.Over || r.Remaining != 0 {
		t.Fatalf("5th hit with the limit raised to 5: %+v", r)
	}
	return local
}

func TestMemoryWindow(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	m := NewMemory(clock)
	if local := testWindow(t, m, clock, "k"); local != 0 {
		t.Errorf("memory store answered %d hits locally", local)
	}
	// Counters of ended windows are dropped once a shard grows.
	clock.Set(t0.Add(time.Hour))
	for i := range 100_000 {
		one(t, m, Hit{Key: "c" + string(rune(i)), Limit: 1, Window: time.Second, Hits: 1})
		if i%10_000 == 0 {
			clock.Set(clock.Now().Add(2 * time.Second))
		}
	}
	if n := m.Len(); n > 40_000 {
		t.Errorf("%d counters live after 100000 keys over many windows; expired ones are not swept", n)
	}
}

func TestRedisWindow(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	r, err := NewRedis(srv.URL(), RedisOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The third hit reaches the limit: the three after it are answered locally.
	if local := testWindow(t, r, clock, "sgrl:test:k"); local != 3 {
		t.Errorf("local over-limit answers = %d, want 3", local)
	}
}

// TestRedisKeys checks what lands in Redis: the window in the key and an expiry just after
// the window ends.
func TestRedisKeys(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	clock.Set(time.Now().Truncate(time.Minute).Add(10 * time.Second))
	r, err := NewRedis(srv.URL(), RedisOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	one(t, r, Hit{Key: "sgrl:x", Limit: 5, Window: time.Minute, Hits: 2})
	start := clock.Now().Truncate(time.Minute).Unix()
	key := "sgrl:x:" + itoa(start)
	n, err := r.rdb.Get(context.Background(), key).Int()
	if err != nil || n != 2 {
		t.Fatalf("GET %s = %d, %v; want 2", key, n, err)
	}
	ttl, err := r.rdb.PTTL(context.Background(), key).Result()
	want := time.Unix(start+61, 0).Sub(time.Now()) // window end + 1s
	if err != nil || ttl < want-time.Second || ttl > want+10*time.Millisecond {
		t.Fatalf("PTTL %s = %v, %v; want about %v (window end + 1s)", key, ttl, err, want)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestRedisDownAndBack: a dead Redis is an error (never a hang or a wrong count), and the
// store works again once Redis is back.
func TestRedisDownAndBack(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	clock.Set(t0)
	r, err := NewRedis(srv.URL(), RedisOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := Hit{Key: "sgrl:down", Limit: 10, Window: time.Minute, Hits: 1}
	one(t, r, h)
	srv.Stop()
	res := make([]Result, 1)
	if err := r.DoLimit(context.Background(), []Hit{h}, res); err == nil {
		t.Fatal("DoLimit succeeded with Redis down")
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.DoLimit(context.Background(), []Hit{h}, res)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The append-only file kept the first hit: 1 before, 1 after.
	if res[0].Remaining != 8 {
		t.Fatalf("after restart remaining = %d, want 8", res[0].Remaining)
	}
}

// TestRedisBatchesConcurrentCalls: many concurrent calls on one key are counted exactly
// once each, in fewer pipelines than calls.
func TestRedisBatchesConcurrentCalls(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := &fakeClock{}
	clock.Set(t0)
	r, err := NewRedis(srv.URL(), RedisOptions{Clock: clock, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const goroutines, each, limit = 64, 50, 1000
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			res := make([]Result, 2)
			for range each {
				hits := []Hit{
					{Key: "sgrl:shared", Limit: limit, Window: time.Minute, Hits: 1},
					{Key: "sgrl:own:" + itoa(int64(g)), Limit: each, Window: time.Minute, Hits: 1},
				}
				if err := r.DoLimit(context.Background(), hits, res); err != nil {
					t.Error(err)
					return
				}
				if !res[0].Over {
					allowed.Add(1)
				}
				if res[1].Over {
					t.Errorf("own key over its limit")
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("allowed %d of %d calls on a limit of %d", got, goroutines*each, limit)
	}
}
