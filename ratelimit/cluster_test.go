package ratelimit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/ratelimit/rules"
	"github.com/specgate/specgate/test/harness/testredis"
)

// clusterLimits gives six routes a route-wide, a per-client and a per-IP limit each.
func clusterLimits() string {
	var b strings.Builder
	b.WriteString("name: specgate\ndomain: specgate\ndescriptors:\n")
	for i := range 6 {
		fmt.Fprintf(&b, `- key: route
  value: r%d
  descriptors:
  - {key: limit, value: "0", rate_limit: {unit: MINUTE, requests_per_unit: 1000}}
  - key: limit
    value: "1"
    descriptors: [{key: client, rate_limit: {unit: MINUTE, requests_per_unit: 3}}]
  - key: limit
    value: "2"
    descriptors: [{key: remote_address, rate_limit: {unit: MINUTE, requests_per_unit: 1000}}]
`, i)
	}
	return b.String()
}

// On a Redis Cluster, the counters one request touches (route-wide, per client, per IP) sit in
// one slot, so a request is counted on one shard. With that shard's master killed, its routes
// fail open and are counted as such, while a route on another shard goes on counting exactly
// (the cluster runs with cluster-require-full-coverage no; with the default "yes" every
// shard refuses writes while one is down, and every route fails open).
func TestClusterShardDownFailsOpenItsRoutesOnly(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 0, "--cluster-require-full-coverage", "no")
	clock := &fakeClock{}
	clock.Set(t0)
	file := writeFile(t, clusterLimits())
	srv, client := start(t, Options{Config: redisConfig(c.URL(), true), LimitsFile: file, Clock: clock})
	req := func(route, sub string) []*rlcommon.RateLimitDescriptor {
		return []*rlcommon.RateLimitDescriptor{d("route", route, "limit", "0"), d("route", route, "limit", "1", "client", sub),
			d("route", route, "limit", "2", "remote_address", "10.0.0.1")}
	}
	if r := ask(t, client, req("r0", "sub:a")...); r.OverallCode != ok {
		t.Fatalf("first request: %v", r)
	}
	// Every key the request created is in one slot.
	ctx := context.Background()
	slots := map[int64]bool{}
	for _, m := range c.Masters {
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr})
		keys, err := rdb.Keys(ctx, rules.KeyPrefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			slots[rdb.ClusterKeySlot(ctx, k).Val()] = true
		}
		rdb.Close()
	}
	if len(slots) != 1 {
		t.Fatalf("one request's counters are in %d slots, want 1", len(slots))
	}

	tab, err := rules.Build([]*rlsconf.RateLimitConfig{loadCfg(t, clusterLimits())})
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]int{}
	for _, r := range tab.Rules {
		owner[r.Route] = c.Owner(t, r.Key("x"))
	}
	down, up := "r0", ""
	for i := range 6 {
		if r := fmt.Sprintf("r%d", i); owner[r] != owner[down] {
			up = r
			break
		}
	}
	if up == "" {
		t.Fatal("all six routes hash to one shard")
	}
	c.Masters[owner[down]].Stop()
	start := time.Now()
	for i := range 5 {
		if r := ask(t, client, req(down, "sub:a")...); r.OverallCode != ok {
			t.Fatalf("request %d to %s, its shard down: %v, want allowed (failOpen)", i, down, r)
		}
	}
	// Logged, not asserted (it depends on the machine): without go-redis's retry backoff
	// 22ms here alone, against 534ms with its defaults (docs/benchmarks.md).
	t.Logf("5 requests failed open in %s", time.Since(start))
	if n := metric(t, srv.Service(), "specgate_ratelimit_decisions_total", "route", down, "decision", "fail_open"); n != 15 {
		t.Errorf("fail_open decisions of %s = %v, want 15 (5 requests × 3 descriptors)", down, n)
	}
	for i := range 3 {
		if r := ask(t, client, req(up, "sub:b")...); r.OverallCode != ok || r.Statuses[1].LimitRemaining != uint32(2-i) {
			t.Fatalf("request %d to %s, its shard up: %v", i, up, r)
		}
	}
	if r := ask(t, client, req(up, "sub:b")...); r.OverallCode != over {
		t.Fatalf("4th request of one client to %s (limit 3): %v, want over limit", up, r)
	}
	if n := metric(t, srv.Service(), "specgate_ratelimit_decisions_total", "route", up, "decision", "fail_open"); n != 0 {
		t.Errorf("%s failed open %v times though its shard is up", up, n)
	}
}
