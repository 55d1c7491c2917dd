package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"google.golang.org/grpc"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/testredis"
)

// benchLimits is one per-client limit high enough that every request is counted in the
// store (the local over-limit cache never answers).
var benchLimits = &rlsconf.RateLimitConfig{Name: "specgate", Domain: policy.Domain, Descriptors: []*rlsconf.RateLimitDescriptor{{
	Key: policy.DescRoute, Value: "orders.list",
	Descriptors: []*rlsconf.RateLimitDescriptor{{
		Key: policy.DescLimit, Value: "0",
		Descriptors: []*rlsconf.RateLimitDescriptor{{
			Key:       policy.DescClient,
			RateLimit: &rlsconf.RateLimitPolicy{Unit: rlsconf.RateLimitUnit_SECOND, RequestsPerUnit: 1 << 30},
		}},
	}},
}}}

// BenchmarkShouldRateLimit measures one descriptor per request, 1000 clients, 32 concurrent
// callers per CPU-pair (like Envoy's workers multiplexing on one connection), in-process and
// over loopback gRPC, with the memory store, one Redis server and a 3-shard Redis Cluster.
func BenchmarkShouldRateLimit(b *testing.B) {
	for _, store := range []string{"memory", "redis", "cluster"} {
		for _, via := range []string{"inproc", "grpc"} {
			b.Run(store+"/"+via, func(b *testing.B) {
				g := config.Default()
				switch store {
				case "redis":
					g.RateLimit.Store = testredis.Start(b).URL()
				case "cluster":
					g.RateLimit.Store = testredis.StartCluster(b, 3, 0).URL()
				}
				s, c := start(b, Options{Config: g})
				if err := s.Service().SetConfig([]*rlsconf.RateLimitConfig{benchLimits}); err != nil {
					b.Fatal(err)
				}
				call := c.ShouldRateLimit
				if via == "inproc" {
					svc := s.Service()
					call = func(ctx context.Context, r *rlsv3.RateLimitRequest, _ ...grpc.CallOption) (*rlsv3.RateLimitResponse, error) {
						return svc.ShouldRateLimit(ctx, r)
					}
				}
				var seq atomic.Int64
				b.SetParallelism(16)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					n := seq.Add(1)
					ctx := context.Background()
					for i := 0; pb.Next(); i++ {
						req := &rlsv3.RateLimitRequest{Domain: policy.Domain, Descriptors: []*rlcommon.RateLimitDescriptor{
							d("route", "orders.list", "limit", "0", "client", "sub:"+strconv.FormatInt((n*7919+int64(i))%1000, 10)),
						}}
						r, err := call(ctx, req)
						if err != nil || r.Statuses[0].CurrentLimit == nil {
							b.Errorf("ShouldRateLimit: %v, %v", r, err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkReplicasOneKey: N ratelimit replicas (each a whole service over gRPC) on one
// store, 64 callers spread over them, five times the limit demanded on one key in each
// window (one iteration = one window of a shared injected clock). Reported: the most any
// window admitted, beside the limit; the goal is never more than the limit, which a shared
// counter gives exactly (the bound for local counters would be limit + replicas × in-flight).
func BenchmarkReplicasOneKey(b *testing.B) {
	for _, c := range []struct {
		replicas int
		cluster  bool
	}{{1, false}, {3, false}, {6, false}, {6, true}} {
		name := fmt.Sprintf("replicas=%d", c.replicas)
		if c.cluster {
			name += "/cluster"
		}
		b.Run(name, func(b *testing.B) {
			url := ""
			if c.cluster {
				url = testredis.StartCluster(b, 3, 0).URL()
			} else {
				url = testredis.Start(b).URL()
			}
			const limit, callers = 1000, 64
			clock := &fakeClock{}
			var cs []rlsv3.RateLimitServiceClient
			for range c.replicas {
				s, cl := start(b, Options{Config: redisConfig(url, false), Clock: clock})
				if err := s.Service().SetConfig([]*rlsconf.RateLimitConfig{routeLimit(limit, rlsconf.RateLimitUnit_MINUTE)}); err != nil {
					b.Fatal(err)
				}
				cs = append(cs, cl)
			}
			req := &rlsv3.RateLimitRequest{Domain: policy.Domain, Descriptors: []*rlcommon.RateLimitDescriptor{d("route", "orders.list", "limit", "0")}}
			most, w := 0, 0
			for b.Loop() {
				clock.Set(t0.Add(time.Duration(w) * time.Minute))
				w++
				var admitted, next atomic.Int64
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() {
						for next.Add(1) <= 5*limit {
							r, err := cs[i%len(cs)].ShouldRateLimit(context.Background(), req)
							if err != nil {
								b.Error(err)
								return
							}
							if r.OverallCode == ok {
								admitted.Add(1)
							}
						}
					})
				}
				wg.Wait()
				most = max(most, int(admitted.Load()))
			}
			if most > limit {
				b.Errorf("a window admitted %d, limit %d", most, limit)
			}
			b.ReportMetric(float64(5*limit*b.N)/b.Elapsed().Seconds(), "calls/s")
			b.ReportMetric(float64(most), "admitted")
			b.ReportMetric(limit, "limit")
		})
	}
}
