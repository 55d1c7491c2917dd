package limiter

import (
	"hash/maphash"
	"sync"
	"time"
)

const overShards = 32

// overCache remembers keys (with their window) that reached their limit, so that further
// hits in the same window are refused without a round trip to the store. A key can only be
// refused early: the cache never lets through what the store would refuse.
type overCache struct {
	seed   maphash.Seed
	shards [overShards]overShard
}

type overShard struct {
	mu      sync.RWMutex
	m       map[string]int64 // key → window end, Unix nanoseconds
	sweepAt int
}

func newOverCache() *overCache {
	c := &overCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string]int64{}
		c.shards[i].sweepAt = 1024
	}
	return c
}

func (c *overCache) shard(key string) *overShard {
	return &c.shards[maphash.String(c.seed, key)%overShards]
}

func (c *overCache) has(key string, now time.Time) bool {
	s := c.shard(key)
	s.mu.RLock()
	end, ok := s.m[key]
	s.mu.RUnlock()
	return ok && now.UnixNano() < end
}

func (c *overCache) add(key string, end, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	s.m[key] = end.UnixNano()
	if len(s.m) >= s.sweepAt {
		n := now.UnixNano()
		for k, e := range s.m {
			if e <= n {
				delete(s.m, k)
			}
		}
		s.sweepAt = max(1024, 2*len(s.m))
	}
	s.mu.Unlock()
}
