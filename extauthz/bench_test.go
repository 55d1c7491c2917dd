package extauthz

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/internal/grpcserver"
	"github.com/specgate/specgate/internal/tracing"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/testredis"
)

func benchServer(b *testing.B) (*server, *testIdP) {
	p := newIdP(b)
	s, err := newServer(context.Background(), deps{cfg: testConfig(p), refreshCooldown: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.close)
	return s, p
}

// BenchmarkCheckCached is a whole in-process Check of a token already verified: header
// parsing, SHA-256, cache lookup, revocation probe, policy, response and metrics.
func BenchmarkCheckCached(b *testing.B) {
	s, p := benchServer(b)
	req := bearerReq(b, protectedRoute, mint(b, p.key, "alice", []string{"orders:read"}, nil))
	ctx := context.Background()
	if r, _ := s.Check(ctx, req); httpStatus(r) != 200 {
		b.Fatal("refused")
	}
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := s.Check(ctx, req); r.GetStatus().GetCode() != 0 {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCheckAPIKey is BenchmarkCheckCached's request with an API key instead of a
// token: the key's SHA-256, the set's lookup, policy, response and metrics.
func BenchmarkCheckAPIKey(b *testing.B) {
	s, _ := benchServer(b)
	const key = "sgk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	now := time.Now()
	s.revoked.Add(revocation.Entry{Key: revocation.APIKeyKey(key), At: now, Expires: now.Add(time.Hour),
		Grant: &revocation.Grant{Client: "acme", Scopes: []string{"orders:read"}, Plan: "gold"}}, now)
	route := policy.Route{ID: protectedRoute.ID, AnyOf: []policy.Requirement{{Scopes: []string{"orders:read"},
		APIKey: &policy.APIKey{Scheme: "ApiKeyAuth", In: "header", Name: "X-API-Key"}}}}
	req := request(b, route, map[string]string{"x-api-key": key})
	ctx := context.Background()
	if r, _ := s.Check(ctx, req); httpStatus(r) != 200 {
		b.Fatal("refused")
	}
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := s.Check(ctx, req); r.GetStatus().GetCode() != 0 {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckCachedParallel(b *testing.B) {
	s, p := benchServer(b)
	req := bearerReq(b, protectedRoute, mint(b, p.key, "alice", []string{"orders:read"}, nil))
	ctx := context.Background()
	if r, _ := s.Check(ctx, req); httpStatus(r) != 200 {
		b.Fatal("refused")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r, _ := s.Check(ctx, req); r.GetStatus().GetCode() != 0 {
				b.Fatal("refused")
			}
		}
	})
}

// BenchmarkVerifyRS256Cold is the cache-miss path: jwx parse, RS256 signature check,
// claim validation and identity extraction.
func BenchmarkVerifyRS256Cold(b *testing.B) {
	s, p := benchServer(b)
	tok := mint(b, p.key, "alice", []string{"orders:read"}, nil)
	ctx := context.Background()
	if _, err := s.verifier.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.verifier.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckInvalidSignature is what a flood of forged tokens costs.
func BenchmarkCheckInvalidSignature(b *testing.B) {
	s, p := benchServer(b)
	tok := mint(b, p.key, "alice", []string{"orders:read"}, nil)
	req := bearerReq(b, protectedRoute, tok[:len(tok)-20]+"AAAAAAAAAAAAAAAAAAAA")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := s.Check(ctx, req); httpStatus(r) != 401 {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkRevocationFanOut: N authz replicas, each a whole Run with its own subscription to
// one Redis store. Each iteration mints a token that every replica has allowed (and cached),
// revokes its jti through one replica's admin API, and measures from the API's 200 to the
// last replica refusing the token over gRPC (one goroutine per replica, calling Check back
// to back). Reported: p50 and p99 of that time over the iterations (make bench: -benchtime 60x).
func BenchmarkRevocationFanOut(b *testing.B) {
	for _, c := range []struct {
		replicas int
		cluster  bool
	}{{1, false}, {4, false}, {8, false}, {8, true}} {
		name := fmt.Sprintf("replicas=%d", c.replicas)
		if c.cluster {
			name += "/cluster"
		}
		b.Run(name, func(b *testing.B) {
			p := newIdP(b)
			cfg := testConfig(p)
			if c.cluster {
				cfg.Revocation.Store = testredis.StartCluster(b, 3, 0).URL()
			} else {
				cfg.Revocation.Store = testredis.Start(b).URL()
			}
			var rs []*replica
			for range c.replicas {
				rs = append(rs, startReplica(b, cfg, ""))
			}
			req := func(tok string) *authv3.CheckRequest { return bearerReq(b, protectedRoute, tok) }
			var took []time.Duration
			i := 0
			for b.Loop() {
				tok := mint(b, p.key, "alice", []string{"orders:read"}, nil)
				for _, r := range rs {
					if r.status(b, tok) != 200 {
						b.Fatal("a fresh token refused")
					}
				}
				if got, body := rs[i%len(rs)].revoke(b, adminToken, map[string]string{"jti": jtiOf(b, tok)}); got != 200 {
					b.Fatalf("revoke: %d %s", got, body)
				}
				start := time.Now()
				var wg sync.WaitGroup
				for _, r := range rs {
					wg.Go(func() {
						deadline := start.Add(5 * time.Second)
						for time.Now().Before(deadline) {
							if resp, err := r.c.Check(context.Background(), req(tok)); err == nil && httpStatus(resp) == 401 {
								return
							}
						}
						b.Error("a replica still allows the token 5s after its revocation")
					})
				}
				wg.Wait()
				took = append(took, time.Since(start))
				i++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(took[(len(took)*99)/100])/1e6, "p99-ms")
		})
	}
}

// BenchmarkCheckOverGRPCTracing is one cached Check over gRPC on loopback, as Envoy makes it,
// with tracing off (no instrumentation) and on while Envoy does not sample the request (its
// traceparent's flag 00: the common case at tracing.sampling 0.01), where authz records
// nothing but otelgrpc still reads the trace context and starts a non-recording span.
func BenchmarkCheckOverGRPCTracing(b *testing.B) {
	s, p := benchServer(b)
	req := bearerReq(b, protectedRoute, mint(b, p.key, "alice", []string{"orders:read"}, nil))
	for _, bc := range []struct {
		name string
		cfg  config.Tracing
	}{
		{"off", config.Tracing{}},
		{"on,unsampled", config.Tracing{OTLP: "127.0.0.1:1"}}, // nothing is exported: no span is sampled
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp, err := tracing.Start(context.Background(), bc.cfg, "bench")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(tp.Shutdown)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			gs := grpcserver.New(100, tp.ServerOptions()...)
			authv3.RegisterAuthorizationServer(gs, s)
			go func() { _ = gs.Serve(lis) }()
			b.Cleanup(gs.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { conn.Close() })
			client := authv3.NewAuthorizationClient(conn)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if r, err := client.Check(ctx, req); err != nil || r.GetStatus().GetCode() != 0 {
					b.Fatal("refused", err)
				}
			}
			// The process's CPU (client and server) per call: steadier than the wall time of a
			// loopback round trip on a shared machine, and the client's part is the same in both.
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the user + system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
