// Command loadgen drives a RateLimitService (specgate's or envoyproxy/ratelimit) over gRPC
// with the descriptors specgate compiles, and prints throughput and latency percentiles.
// The load is bounded by a request count and a duration.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	var (
		addr     = flag.String("addr", "127.0.0.1:9003", "RateLimitService address")
		name     = flag.String("name", "", "label of the result line")
		conc     = flag.Int("c", 64, "concurrent callers")
		conns    = flag.Int("conns", 2, "gRPC connections (Envoy keeps few, multiplexed)")
		total    = flag.Int("n", 200_000, "requests at most")
		dur      = flag.Duration("d", 10*time.Second, "duration at most")
		clients  = flag.Int("clients", 1000, "distinct client values")
		warm     = flag.Int("warmup", 2000, "requests before measuring")
		domain   = flag.String("domain", "specgate", "rate-limit domain")
		routeID  = flag.String("route", "orders.list", "route id of the descriptor")
		keyKind  = flag.String("key", "client", "key kind of the descriptor (client, ip, header; route for none)")
		deadline = flag.Duration("timeout", time.Second, "per-call timeout")
	)
	flag.Parse()
	if *addr == "" || *conc < 1 || *conns < 1 || *total < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: bad flags")
		os.Exit(2)
	}
	cs := make([]rlsv3.RateLimitServiceClient, *conns)
	for i := range cs {
		// Distinct authorities keep grpc-go from sharing one transport.
		conn, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithAuthority("rls-"+strconv.Itoa(i)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		defer conn.Close()
		cs[i] = rlsv3.NewRateLimitServiceClient(conn)
	}
	request := func(i int64) *rlsv3.RateLimitRequest {
		es := []*rlcommon.RateLimitDescriptor_Entry{{Key: "route", Value: *routeID}, {Key: "limit", Value: "0"}}
		if *keyKind != "route" {
			es = append(es, &rlcommon.RateLimitDescriptor_Entry{Key: *keyKind, Value: "sub:" + strconv.FormatInt(i%int64(*clients), 10)})
		}
		return &rlsv3.RateLimitRequest{Domain: *domain, Descriptors: []*rlcommon.RateLimitDescriptor{{Entries: es}}}
	}
	var errs, over atomic.Int64
	run := func(n int64, lats [][]time.Duration, until time.Time) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for g := range *conc {
			c := cs[g%len(cs)]
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > n || time.Now().After(until) {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), *deadline)
					t := time.Now()
					r, err := c.ShouldRateLimit(ctx, request(i))
					d := time.Since(t)
					cancel()
					switch {
					case err != nil:
						errs.Add(1)
					case r.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT:
						over.Add(1)
					}
					if lats != nil {
						lats[g] = append(lats[g], d)
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	run(int64(*warm), nil, time.Now().Add(*dur))
	errs.Store(0)
	over.Store(0)
	lats := make([][]time.Duration, *conc)
	elapsed := run(int64(*total), lats, time.Now().Add(*dur))
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	fmt.Printf("%-18s requests=%d rps=%.0f p50_us=%d p99_us=%d errors=%d over_limit=%d\n", *name, len(all),
		float64(len(all))/elapsed.Seconds(), pct(0.50).Microseconds(), pct(0.99).Microseconds(),
		errs.Load(), over.Load())
	if errs.Load() > 0 {
		os.Exit(1)
	}
}
