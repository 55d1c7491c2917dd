package revocation

import (
	"hash/maphash"
	"math"
	"sync/atomic"
)

// overlay is a small bloom filter that takes additions in place, without copying: its bits
// are set and read atomically, so the hot path reads it without a lock while revocations
// arrive. It holds the keys added since the big filter was last built; when it is full they
// are folded into a copy of the big one. Each of its positives is confirmed against the exact
// set like any other, so its false positives cost a lookup, never a refused token.
type overlay struct {
	words []atomic.Uint64
	m, k  uint64
	cap   int
	n     atomic.Int64
	seed  maphash.Seed
}

// newOverlay sizes the overlay for n keys at false-positive rate fp.
func newOverlay(n int, fp float64) *overlay {
	m := uint64(math.Ceil(-float64(n) * math.Log(fp) / (math.Ln2 * math.Ln2)))
	m = max(64, (m+63)/64*64)
	k := uint64(math.Max(1, math.Round(float64(m)/float64(n)*math.Ln2)))
	return &overlay{words: make([]atomic.Uint64, m/64), m: m, k: k, cap: n, seed: maphash.MakeSeed()}
}

// hashes splits one 64-bit hash into the two halves of double hashing (Kirsch and
// Mitzenmacher): position i is h1 + i*h2. The overlay holds far fewer than 2^32 bits.
func (o *overlay) hashes(key []byte) (uint64, uint64) {
	h := maphash.Bytes(o.seed, key)
	return h & 0xffffffff, h>>32 | 1
}

// add sets key's bits and reports whether the overlay is now full.
func (o *overlay) add(key []byte) (full bool) {
	h1, h2 := o.hashes(key)
	for i := range o.k {
		p := (h1 + i*h2) % o.m
		o.words[p/64].Or(1 << (p % 64))
	}
	return int(o.n.Add(1)) >= o.cap
}

func (o *overlay) test(key []byte) bool {
	if o.n.Load() == 0 {
		return false
	}
	h1, h2 := o.hashes(key)
	for i := range o.k {
		p := (h1 + i*h2) % o.m
		if o.words[p/64].Load()&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}
