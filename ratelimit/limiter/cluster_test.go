package limiter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

// On a Redis Cluster (3 masters, 1 replica each), two limiter replicas count exactly, keys
// spread over the shards (each pipeline split by node, redirections followed), and every
// counter is where its slot says.
func TestRedisClusterCountsExactly(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	clock := liveClock()
	replicas := limiters(t, c.URL(), clock, 2)
	const keys, hitsEach = 60, 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*keys*hitsEach)
	for i, r := range replicas {
		wg.Go(func() {
			for h := range hitsEach {
				for k := range keys {
					hits := []Hit{{Key: clusterKey(k), Limit: 1000, Window: longWindow, Hits: 1}}
					res := make([]Result, 1)
					if err := r.DoLimit(context.Background(), hits, res); err != nil {
						errs <- fmt.Errorf("replica %d hit %d key %d: %w", i, h, k, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	start := windowStart(clock)
	ctx := context.Background()
	for k := range keys {
		key := fmt.Sprintf("%s:%d", clusterKey(k), start)
		if n, err := replicas[0].rdb.Get(ctx, key).Int(); err != nil || n != 2*hitsEach {
			t.Errorf("%s = %d, %v; want %d", key, n, err, 2*hitsEach)
		}
	}
	for _, m := range c.Masters {
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr})
		n, err := rdb.DBSize(ctx).Result()
		rdb.Close()
		if err != nil || n == 0 {
			t.Errorf("master %s holds %d keys (%v): counters are not spread over the shards", m.Addr, n, err)
		}
	}
}

// Counters expire in Redis by the real clock at the end of their window, so these tests,
// which read counters back seconds later, count in a day-long window that holds the real
// time (a minute-long one, started early in the test's minute, could end before they read).
const longWindow = 24 * time.Hour

func liveClock() *fakeClock {
	c := &fakeClock{}
	c.Set(time.Now())
	return c
}

// windowStart is the start (Unix seconds) of clock's longWindow, as counter keys name it.
func windowStart(clock TimeSource) int64 {
	u := clock.Now().Unix()
	return u - u%int64(longWindow/time.Second)
}

// limiters are n limiter replicas on the store url, closed when the test ends.
func limiters(t *testing.T, url string, clock TimeSource, n int) []*Redis {
	t.Helper()
	var out []*Redis
	for range n {
		r, err := NewRedis(url, RedisOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, r)
	}
	return out
}

// clusterKey is a counter key as rules makes them: a per-rule hash, then the value counted.
func clusterKey(k int) string {
	sum := sha256.Sum256([]byte{byte(k)})
	return fmt.Sprintf("sgrl:%x:route/0:sub:user-%d", sum[:8], k)
}

// Behind Sentinel, the primary killed: counting stops with errors (the service fails open)
// and is back once the sentinels have promoted the replica.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	st := testredis.StartSentinels(t, 1)
	clock := liveClock()
	r, err := NewRedis(st.URL(), RedisOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	hit := func() error {
		return r.DoLimit(context.Background(), []Hit{{Key: "sgrl:sentinel", Limit: 1000, Window: longWindow, Hits: 1}}, make([]Result, 1))
	}
	if err := hit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st.Primary.Stop()
	testutil.Eventually(t, 30*time.Second, "counting again after the failover", func() bool { return hit() == nil })
	t.Logf("counting again %s after the primary died", time.Since(start).Round(time.Millisecond))
}

// On a cluster, the master of a counter's slot killed under load: counting fails (the service
// fails open) until the replica is promoted, then goes on from the replicated count. Without
// a slot-map reload on errors, go-redis would dial the dead master for a minute.
func TestRedisClusterFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	clock := liveClock()
	r := limiters(t, c.URL(), clock, 1)[0]
	const key = "sgrl:{failover}:k"
	hit := func() error {
		return r.DoLimit(context.Background(), []Hit{{Key: key, Limit: 1 << 30, Window: longWindow, Hits: 1}}, make([]Result, 1))
	}
	for range 100 {
		if err := hit(); err != nil {
			t.Fatal(err)
		}
	}
	owner := c.Owner(t, key)
	replica := redis.NewClient(&redis.Options{Addr: c.Replicas[owner].Addr,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }})
	defer replica.Close()
	counter := fmt.Sprintf("%s:%d", key, windowStart(clock))
	testutil.Eventually(t, 10*time.Second, "the replica has the count", func() bool {
		return replica.Get(context.Background(), counter).Val() == "100"
	})
	c.Masters[owner].Stop()
	var failed int
	took := testutil.Eventually(t, 30*time.Second, "counting again after the failover", func() bool {
		if hit() != nil {
			failed++
			return false
		}
		return true
	})
	if n, err := r.rdb.Get(context.Background(), counter).Int(); err != nil || n != 101 {
		t.Fatalf("after the failover %s = %d (%v), want 101: the 100 replicated hits and the first one after", counter, n, err)
	}
	t.Logf("counting again %s after the master died (%d hits failed meanwhile)", took.Round(time.Millisecond), failed)
}

// Eight limiter replicas on one Redis hitting one key at once count exactly: the sum is the
// hits sent, never more (no retried pipeline) and never less.
func TestEightReplicasCountExactly(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	clock := liveClock()
	const replicas, hits = 8, 200
	var wg sync.WaitGroup
	rs := limiters(t, srv.URL(), clock, replicas)
	for _, r := range rs {
		wg.Go(func() {
			for range hits {
				_ = r.DoLimit(context.Background(), []Hit{{Key: "sgrl:fan", Limit: 1 << 30, Window: longWindow, Hits: 1}}, make([]Result, 1))
			}
		})
	}
	wg.Wait()
	key := fmt.Sprintf("sgrl:fan:%d", windowStart(clock))
	if n, err := rs[0].rdb.Get(context.Background(), key).Int(); err != nil || n != replicas*hits {
		t.Fatalf("%s = %d (%v), want %d", key, n, err, replicas*hits)
	}
}

// A slot moved to another master while two replicas count in it: go-redis follows the ASK
// and MOVED redirections, and the count stays exact (every acknowledged hit, no hit twice).
func TestRedisClusterSlotMigrationUnderLoad(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 0)
	ctx := context.Background()
	clock := liveClock()
	key := clusterKey(7)
	counter := fmt.Sprintf("%s:%d", key, windowStart(clock))
	to := (c.Owner(t, counter) + 1) % len(c.Masters)
	replicas := limiters(t, c.URL(), clock, 2)
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	for _, r := range replicas {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := r.DoLimit(ctx, []Hit{{Key: key, Limit: 1 << 30, Window: longWindow, Hits: 1}}, make([]Result, 1))
				if err != nil {
					failed.Add(1)
				} else {
					sent.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	c.MigrateSlot(t, counter, to, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	owner := redis.NewClient(&redis.Options{Addr: c.Masters[to].Addr})
	defer owner.Close()
	n, err := owner.Get(ctx, counter).Int64()
	// A hit whose answer was lost may still have counted: between the two, never outside.
	if err != nil || n < sent.Load() || n > sent.Load()+failed.Load() {
		t.Fatalf("after the migration %s = %d on the new owner (%v), want the %d hits that succeeded (+ up to %d that failed)", counter, n, err, sent.Load(), failed.Load())
	}
	t.Logf("%d hits counted across the migration, %d refused", sent.Load(), failed.Load())
}
