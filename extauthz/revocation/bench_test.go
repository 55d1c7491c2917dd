package revocation

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/specgate/specgate/test/harness/testredis"
)

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func filled(n int) *Set {
	now := time.Now()
	s := NewSet(uint(n*2), 1e-7)
	for i := range n {
		s.Add(Entry{Key: JTIKey(fmt.Sprint("revoked-", i)), At: now, Expires: now.Add(time.Hour)}, now)
	}
	return s
}

// BenchmarkRevokedNegative is the hot path for a token that is not revoked: jti and
// subject both miss the filter.
func BenchmarkRevokedNegative(b *testing.B) {
	s := filled(10_000)
	var sum [32]byte
	iat := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if s.Revoked("7f3c9a0b5e2d4c1a8b6e0f9d2c3a4b5e", "user-12345", &sum, &sum, iat) {
				b.Fatal("false positive")
			}
		}
	})
}

// BenchmarkBloomTestNegative is one filter probe: the negative lookup of the hot path.
func BenchmarkBloomTestNegative(b *testing.B) {
	s := filled(10_000)
	key := []byte("jti:7f3c9a0b5e2d4c1a8b6e0f9d2c3a4b5e")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Lookup(key); ok {
			b.Fatal("false positive")
		}
	}
}

// BenchmarkFilterSize10M reports the memory of the filter sized for 10M entries at 1e-7
// (the bits only; no entries are inserted).
func BenchmarkFilterSize10M(b *testing.B) {
	var m, k uint
	for b.Loop() {
		m, k = bloom.EstimateParameters(10_000_000, 1e-7)
	}
	b.ReportMetric(float64(m)/8/1e6, "MB")
	b.ReportMetric(float64(k), "k")
}

// BenchmarkBloomNegative10MAtDesignLoad probes a full-size filter (10M at 1e-7, 42 MB)
// whose bits are half set, as at its design load: most probes miss the CPU cache.
func BenchmarkBloomNegative10MAtDesignLoad(b *testing.B) {
	m, k := bloom.EstimateParameters(10_000_000, 1e-7)
	words := make([]uint64, (m+63)/64)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range words {
		words[i] = r.Uint64() // each bit set with probability 1/2
	}
	f := bloom.FromWithM(words, m, k)
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("jti:%032x", r.Uint64()))
	}
	b.ReportAllocs()
	hits, i := 0, 0
	for b.Loop() {
		if f.Test(keys[i&1023]) {
			hits++
		}
		i++
	}
	b.ReportMetric(float64(m)/8/1e6, "MB")
	_ = hits
}

// BenchmarkAdd measures a revocation applied while readers run (copy-on-write folds
// included).
func BenchmarkAdd(b *testing.B) {
	s := filled(10_000)
	now := time.Now()
	i := 0
	for b.Loop() {
		s.Add(Entry{Key: JTIKey(fmt.Sprint("new-", i)), At: now, Expires: now.Add(time.Hour)}, now)
		i++
	}
}

// BenchmarkAddBulkFullSize is a mass revocation (a breach: every session of many users) into a
// filter sized for 10M entries at 1e-7 (42 MB): what each Add costs in time and allocation,
// folds included.
func BenchmarkAddBulkFullSize(b *testing.B) {
	s := NewSet(10_000_000, 1e-7)
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add(Entry{Key: JTIKey(fmt.Sprint("bulk-", i)), At: now, Expires: now.Add(time.Hour)}, now)
		i++
	}
}

// BenchmarkRedisStoreAdd is one revocation stored in Redis as the API stores it: on a
// primary without replicas (MULTI/EXEC, then ROLE), and on one with a replica behind Sentinel
// (the same, then WAIT until the replica holds it).
func BenchmarkRedisStoreAdd(b *testing.B) {
	for _, topo := range []struct {
		name string
		url  func() string
	}{
		{"single", func() string { return testredis.Start(b).URL() }},
		{"sentinel-1-replica", func() string { return testredis.StartSentinels(b, 1).URL() }},
	} {
		b.Run(topo.name, func(b *testing.B) {
			st, err := NewRedis(topo.url(), slogDiscard())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			now := time.Now()
			i := 0
			for b.Loop() {
				if err := st.Add(b.Context(), jtiEntry(fmt.Sprint("bench-", i), now)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
