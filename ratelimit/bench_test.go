package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"google.golang.org/grpc"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/testredis"
	"github.com/specgate/specgate/policy"
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
// over loopback gRPC, with the memory and the Redis store.
func BenchmarkShouldRateLimit(b *testing.B) {
	for _, store := range []string{"memory", "redis"} {
		for _, via := range []string{"inproc", "grpc"} {
			b.Run(store+"/"+via, func(b *testing.B) {
				g := config.Default()
				if store == "redis" {
					g.RateLimit.Store = testredis.Start(b).URL()
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
