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
	m       map[string]overEntry
	sweepAt int
}

// overEntry says that a key was at limit until end (Unix nanoseconds). A higher limit (after
// a config update) makes the entry moot.
type overEntry struct {
	end   int64
	limit uint32
}

func newOverCache() *overCache {
	c := &overCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string]overEntry{}
		c.shards[i].sweepAt = 1024
	}
	return c
}

func (c *overCache) shard(key string) *overShard {
	return &c.shards[maphash.String(c.seed, key)%overShards]
}

func (c *overCache) has(key string, limit uint32, now time.Time) bool {
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	return ok && now.UnixNano() < e.end && limit <= e.limit
}

func (c *overCache) add(key string, limit uint32, end, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	s.m[key] = overEntry{end: end.UnixNano(), limit: limit}
	if len(s.m) >= s.sweepAt {
		n := now.UnixNano()
		for k, e := range s.m {
			if e.end <= n {
				delete(s.m, k)
			}
		}
		s.sweepAt = max(1024, 2*len(s.m))
	}
	s.mu.Unlock()
}
