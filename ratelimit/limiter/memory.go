package limiter

import (
	"context"
	"hash/maphash"
	"sync"
)

const memShards = 64

// Memory is the single-replica store: a counter per key and window in sharded maps.
type Memory struct {
	clock  TimeSource
	seed   maphash.Seed
	shards [memShards]memShard
}

type memShard struct {
	mu sync.Mutex
	m  map[string]memCounter
	// sweepAt is the size at which expired counters are dropped, so keys of clients that
	// went away do not pile up.
	sweepAt int
}

type memCounter struct {
	start int64 // window start, Unix seconds
	end   int64 // window end, Unix seconds
	count uint64
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty memory store.
func NewMemory(clock TimeSource) *Memory {
	m := &Memory{clock: clock, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = map[string]memCounter{}
		m.shards[i].sweepAt = 1024
	}
	return m
}

func (m *Memory) DoLimit(_ context.Context, hits []Hit, res []Result) error {
	now := m.clock.Now()
	for i, h := range hits {
		start, end, resetIn := window(now, h.Window)
		s := &m.shards[maphash.String(m.seed, h.Key)%memShards]
		s.mu.Lock()
		c, ok := s.m[h.Key]
		if !ok || c.start != start || c.end != end.Unix() {
			c = memCounter{start: start, end: end.Unix()}
		}
		c.count += uint64(h.Hits)
		s.m[h.Key] = c
		if !ok && len(s.m) >= s.sweepAt {
			s.sweep(now.Unix())
		}
		s.mu.Unlock()
		res[i] = result(c.count, h, resetIn)
	}
	return nil
}

func (s *memShard) sweep(now int64) {
	for k, c := range s.m {
		if c.end <= now {
			delete(s.m, k)
		}
	}
	s.sweepAt = max(1024, 2*len(s.m))
}

// Len is the number of live counters (for tests).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (m *Memory) Close() error { return nil }
