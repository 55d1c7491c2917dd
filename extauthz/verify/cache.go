package verify

import (
	"encoding/binary"
	"sync"
	"time"
)

// Cache remembers verified tokens by their SHA-256 until they expire, so a repeat
// request skips the signature check. Sharded to keep lock contention off the hot path;
// bounded, evicting an arbitrary entry of a full shard (Go's map order is randomised).
// Revocation is not cached: it is checked on every request.
type Cache struct {
	shards [64]cacheShard
	per    int
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*Identity
}

// NewCache holds at most about size identities.
func NewCache(size int) *Cache {
	c := &Cache{per: max(size/64, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*Identity)
	}
	return c
}

func (c *Cache) shard(sum *[32]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint64(sum[:8])%uint64(len(c.shards))]
}

func (c *Cache) Get(sum *[32]byte, now time.Time) *Identity {
	s := c.shard(sum)
	s.mu.RLock()
	id := s.m[*sum]
	s.mu.RUnlock()
	if id == nil || !now.Before(id.Exp) {
		return nil
	}
	return id
}

func (c *Cache) Put(sum *[32]byte, id *Identity, now time.Time) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.per {
		// Expired entries go first; otherwise one arbitrary victim.
		n := 0
		for k, v := range s.m {
			if !now.Before(v.Exp) {
				delete(s.m, k)
			}
			if n++; n >= 16 {
				break
			}
		}
		if len(s.m) >= c.per {
			for k := range s.m {
				delete(s.m, k)
				break
			}
		}
	}
	s.m[*sum] = id
}
