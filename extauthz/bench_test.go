package extauthz

import (
	"context"
	"testing"
	"time"
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
	if _, err := s.verifier.verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.verifier.verify(ctx, tok); err != nil {
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
