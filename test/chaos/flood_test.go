package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// headroom is what the flood scenario leaves the shared Redis above its memory at start.
const headroom = 256 << 10

// Scenario 8. Anonymous clients flood a route whose limit is keyed by a header they choose,
// on a Redis shared with the revocations that never evicts (as revocations need) and has
// 256 KB of headroom. Values past rateLimit.maxHeaderValues share the overflow bucket, so the
// flood adds a bounded number of counters: Redis keeps its headroom, the revocation API
// answers 200 after the flood, and revoked tokens stay refused. Without the bound every value
// was a counter until its window ended, and a flood of random values filled the headroom:
// Redis refused writes, revocations answered 503 and limits failed open. (deploy/ also keeps
// the counters in a Redis of their own.)
func TestCounterFloodKeepsRevocations(t *testing.T) {
	b := e2e.NewBackend(t, "shop")
	spec := stack.ShopSpec + `  /tenants:
    get: {operationId: tenants, security: [], x-specgate: {allowedHeaders: [X-Tenant], rateLimits: [{requests: 1000, per: hour, key: "header:X-Tenant"}]}, responses: {"200": {description: ok}}}
`
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": spec},
		Vars:      map[string]string{"PORT": b.Port(), "LIMIT": perSecond},
		RedisArgs: []string{"--maxmemory-policy", "noeviction"},
		Configure: func(c *config.Gateway) { tolerant(c); c.RateLimit.MaxHeaderValues = 200 }})
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.Redis.Addr})
	defer rdb.Close()
	used := func() int64 {
		info, err := rdb.InfoMap(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		fmt.Sscan(info["Memory"]["used_memory"], &n)
		return n
	}
	alice, mallory, eve := s.Token("alice", "orders:read"), s.Token("mallory", "orders:read"), s.Token("eve", "orders:read")
	revokeNow(t, s, mallory)
	client := &http.Client{Timeout: 5 * time.Second}
	// flood sends n requests, 8 at a time, with X-Tenant values from value.
	var failed atomic.Int64
	codes := sync.Map{}
	flood := func(n int, value func(i int64) string) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					req, _ := http.NewRequest("GET", s.Public+"/shop/tenants", nil)
					req.Header.Set("X-Tenant", value(i))
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					resp.Body.Close()
					c, _ := codes.LoadOrStore(resp.StatusCode, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
				}
			})
		}
		wg.Wait()
	}
	// The headroom is counted once every connection to Redis is open and has its buffers.
	flood(200, func(int64) string { return "warm" })
	codes.Clear()
	before := used()
	if err := rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(before+headroom)).Err(); err != nil {
		t.Fatal(err)
	}

	n := pick(3000, 15000)
	began := time.Now()
	flood(n, func(i int64) string { return fmt.Sprintf("flood-%d-%d", i, time.Now().UnixNano()) })
	var seen []string
	codes.Range(func(k, v any) bool {
		seen = append(seen, fmt.Sprintf("%v: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	grew := used() - before
	t.Logf("figure: %d anonymous requests with random X-Tenant values in %s (%s; %d failed): Redis grew by %d KB of its %d KB headroom",
		n, time.Since(began).Round(time.Millisecond), strings.Join(seen, ", "), failed.Load(), grew>>10, headroom>>10)

	m := testutil.Metrics(t, "http://"+s.RateLimit[0].HTTP+"/metrics")
	if o, _ := sum(m, "specgate_ratelimit_value_overflow_total"); o < float64(n-200) {
		t.Errorf("specgate_ratelimit_value_overflow_total %v after %d random values (bound 200)", o, n)
	}
	if e, _ := sum(m, "specgate_ratelimit_store_errors_total"); e != 0 {
		t.Errorf("the counters' store failed %v times during the flood", e)
	}
	if code, body := revoke(t, s.Authz[0].HTTP, eve); code != 200 {
		t.Fatalf("revocation after the flood: %d %s, want 200", code, body)
	}
	testutil.Eventually(t, 2*time.Second, "the new revocation refused", func() bool { return get(t, s.Public+"/shop/orders", eve) == 401 })
	if c := get(t, s.Public+"/shop/orders", mallory); c != 401 {
		t.Errorf("token revoked before the flood: %d, want 401", c)
	}
	if c := get(t, s.Public+"/shop/orders", alice); c != 200 {
		t.Errorf("valid token after the flood: %d, want 200", c)
	}
}
