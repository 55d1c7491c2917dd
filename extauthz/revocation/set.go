// Package revocation keeps the set of revoked tokens: an exact set with a bloom filter in
// front for the hot path, and durable stores (Redis, a local file) that keep it across
// restarts and replicas.
package revocation

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// Key prefixes of the entries: a token id, a subject, a token by value (docs/operations.md).
const (
	PrefixJTI     = "jti:"
	PrefixSubject = "sub:"
	PrefixToken   = "tok:"
)

// JTIKey, SubjectKey and TokenKey build the entry keys.
func JTIKey(jti string) string     { return PrefixJTI + jti }
func SubjectKey(sub string) string { return PrefixSubject + sub }
func TokenKey(sum [32]byte) string { return PrefixToken + hex.EncodeToString(sum[:]) }

// TokenHash is the hash of the whole token: the verified-token cache's key.
func TokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// ContentHash names a token without jti in tok: revocations: the hash of what was signed
// (header.payload), not of the whole token. A signature can be spelled more than one way —
// ECDSA's (r, n−s) verifies as (r, s) does, PS256 signs the same content anew each time — and
// each spelling is the same token.
func ContentHash(token string) [32]byte {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		token = token[:i]
	}
	return sha256.Sum256([]byte(token))
}

// Entry is one revocation. A jti: or tok: entry refuses that token; a sub: entry refuses
// every token of the subject issued at or before At.
//
// An apikey: entry is an API key instead (the hash of the key; the key itself is never
// stored): Grant says whom it identifies, At when it was created, Expires when it stops
// working; Revoked refuses it. The same store and the same channel carry keys and
// revocations to every replica.
type Entry struct {
	Key     string    `json:"key"`
	At      time.Time `json:"at"`
	Expires time.Time `json:"expires"`
	Grant   *Grant    `json:"grant,omitempty"`
	Revoked bool      `json:"revoked,omitempty"`
}

// Grant is what an API key stands for: a client, its scopes (sorted) and its quota plan.
type Grant struct {
	Client string   `json:"client"`
	Scopes []string `json:"scopes,omitempty"`
	Plan   string   `json:"plan,omitempty"`
}

// PrefixAPIKey keys API key entries by the hex SHA-256 of the key.
const PrefixAPIKey = "apikey:"

// APIKeyKey is the entry key of an API key.
func APIKeyKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return PrefixAPIKey + hex.EncodeToString(sum[:])
}

// merge keeps the later revocation time and expiry of two entries for one key: a second
// revocation of a subject moves its cut-off forward, never back. An API key stays revoked
// once one of its entries says so, and keeps the grant it was created with.
func merge(a, b Entry) Entry {
	if a.Grant != nil || b.Grant != nil {
		if a.Grant == nil {
			a.Grant, a.At = b.Grant, b.At
		}
		a.Revoked = a.Revoked || b.Revoked
		if b.Expires.After(a.Expires) {
			a.Expires = b.Expires
		}
		return a
	}
	if b.At.After(a.At) {
		a.At = b.At
	}
	if b.Expires.After(a.Expires) {
		a.Expires = b.Expires
	}
	return a
}

// overlayCap is how many additions the overlay takes before they are folded into a new copy
// of the big filter. Copying a 42 MB filter per revocation would be wasteful; with the
// overlay a mass revocation copies it once per overlayCap additions.
const overlayCap = 1 << 16

// filter is a snapshot read by the hot path without locks: a bloom filter, immutable once
// published, plus the overlay of keys added since it was built.
type filter struct {
	bloom    *bloom.BloomFilter
	recent   *overlay
	inserted uint // keys in bloom, including ones that expired since
	capacity uint // entries the bloom was sized for
}

func (f *filter) mayContain(key []byte) bool {
	return f.recent.test(key) || f.bloom.Test(key)
}

// Set is the in-memory revocation set. Lookups are safe from any number of goroutines while
// entries are added: the filter is swapped copy-on-write and every positive is confirmed
// against the exact map, so a false positive never refuses a token.
type Set struct {
	expected uint
	fpRate   float64

	wmu     sync.Mutex // serialises writers
	snap    atomic.Pointer[filter]
	pending []string // keys in the overlay, to fold into the next filter (under wmu)

	mu    sync.RWMutex
	exact map[string]Entry
	// The change log that Changes feeds the Envoy plugin from (under mu): seq counts every
	// change; log holds the latest entries written, log[i] at seq logBase+i+1. A Replace
	// empties it (everything may have changed).
	// epoch names this set's numbering: another replica's (or process's) seq means nothing here.
	epoch   uint64
	seq     uint64
	log     []Entry
	logBase uint64

	loaded atomic.Bool
	fill   atomic.Uint64 // float64 bits
	estFP  atomic.Uint64 // float64 bits
}

// NewSet sizes the filter for expected entries at the false-positive rate fp.
func NewSet(expected uint, fp float64) *Set {
	if expected == 0 {
		expected = 1
	}
	s := &Set{expected: expected, fpRate: fp, exact: map[string]Entry{}, epoch: rand.Uint64()}
	s.publish(&filter{bloom: bloom.NewWithEstimates(expected, fp), capacity: expected})
	return s
}

// Loaded reports whether the set has been filled from its store at least once.
func (s *Set) Loaded() bool { return s.loaded.Load() }

// Len is the number of live entries.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.exact)
}

// FillRatio and EstimatedFPRate describe the current filter (updated on every rebuild/fold).
func (s *Set) FillRatio() float64       { return math.Float64frombits(s.fill.Load()) }
func (s *Set) EstimatedFPRate() float64 { return math.Float64frombits(s.estFP.Load()) }

// Lookup returns the entry for key if it is revoked. It takes no lock unless the filter
// says the key may be present.
func (s *Set) Lookup(key []byte) (Entry, bool) {
	if !s.snap.Load().mayContain(key) {
		return Entry{}, false
	}
	s.mu.RLock()
	e, ok := s.exact[string(key)]
	s.mu.RUnlock()
	return e, ok
}

// Revoked reports whether a token is refused: its jti (or, without jti, its hash) is
// revoked, or its subject was revoked at or after its iat (a token without iat of a revoked
// subject is refused). Times compare in whole seconds, as iat is.
func (s *Set) Revoked(jti, sub string, content, whole *[32]byte, iat time.Time) bool {
	var buf [160]byte
	if jti != "" {
		if _, ok := s.Lookup(append(append(buf[:0], PrefixJTI...), jti...)); ok {
			return true
		}
	} else {
		// whole: tok: entries written before they were keyed by content; they expire with
		// their tokens.
		for _, sum := range []*[32]byte{content, whole} {
			k := append(buf[:0], PrefixToken...)
			k = hex.AppendEncode(k, sum[:])
			if _, ok := s.Lookup(k); ok {
				return true
			}
		}
	}
	return s.SubjectRevoked(sub, iat)
}

// SubjectRevoked reports whether a token of sub issued at iat is refused by a subject
// revocation.
func (s *Set) SubjectRevoked(sub string, iat time.Time) bool {
	if sub == "" {
		return false
	}
	var buf [160]byte
	if e, ok := s.Lookup(append(append(buf[:0], PrefixSubject...), sub...)); ok {
		return iat.IsZero() || iat.Unix() <= e.At.Unix()
	}
	return false
}

// APIKey returns the entry of an API key, by the key as the client sent it: found, and not
// revoked, is a key that works.
func (s *Set) APIKey(key string) (Entry, bool) {
	var buf [len(PrefixAPIKey) + 64]byte
	sum := sha256.Sum256([]byte(key))
	k := hex.AppendEncode(append(buf[:0], PrefixAPIKey...), sum[:])
	e, ok := s.Lookup(k)
	return e, ok && e.Grant != nil
}

// APIKeys lists the API key entries, revoked ones included.
func (s *Set) APIKeys() []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Entry
	for k, e := range s.exact {
		if strings.HasPrefix(k, PrefixAPIKey) && e.Grant != nil {
			out = append(out, e)
		}
	}
	return out
}

// Add applies one entry (idempotent; an expired entry is ignored).
func (s *Set) Add(e Entry, now time.Time) {
	if !e.Expires.After(now) {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if old, ok := s.exact[e.Key]; ok {
		e = merge(old, e)
	}
	s.exact[e.Key] = e
	s.logLocked(e)
	s.mu.Unlock()

	cur := s.snap.Load()
	key := []byte(e.Key)
	if cur.mayContain(key) {
		return // a positive is confirmed against exact, which has the key now
	}
	s.pending = append(s.pending, e.Key)
	if cur.recent.add(key) {
		b := cur.bloom.Copy()
		for _, k := range s.pending {
			b.AddString(k)
		}
		s.publish(&filter{bloom: b, inserted: cur.inserted + uint(len(s.pending)), capacity: cur.capacity})
	}
}

// maxLog bounds the change log: a reader further behind gets the whole set.
const maxLog = 4096

func (s *Set) logLocked(e Entry) {
	s.seq++
	if len(s.log) == maxLog {
		n := copy(s.log, s.log[maxLog/2:])
		s.log, s.logBase = s.log[:n], s.logBase+maxLog/2
	}
	s.log = append(s.log, e)
}

// Changes returns what changed after seq since of this set's epoch: the entries written since
// (full false), or every live entry (full true) when the log no longer reaches back that far,
// since is 0 or the epoch is another's. keep filters the entries. next and epochNow are what
// to ask with next time. Entries only expire between changes, which a reader does itself
// from their Expires.
func (s *Set) Changes(epoch, since uint64, keep func(Entry) bool) (entries []Entry, epochNow, next uint64, full bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if epoch != s.epoch || since == 0 || since < s.logBase || since > s.seq {
		for _, e := range s.exact {
			if keep(e) {
				entries = append(entries, e)
			}
		}
		return entries, s.epoch, s.seq, true
	}
	for _, e := range s.log[since-s.logBase:] {
		if keep(e) {
			entries = append(entries, e)
		}
	}
	return entries, s.epoch, s.seq, false
}

// Replace swaps in the whole set, as loaded from the store.
func (s *Set) Replace(entries []Entry, now time.Time) {
	exact := make(map[string]Entry, len(entries))
	for _, e := range entries {
		if !e.Expires.After(now) {
			continue
		}
		if old, ok := exact[e.Key]; ok {
			e = merge(old, e)
		}
		exact[e.Key] = e
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	// Entries added locally but not yet in the store's answer (a write that raced the
	// load) are kept: the store only ever grows until entries expire.
	for k, e := range s.exact {
		if old, ok := exact[k]; ok {
			exact[k] = merge(old, e)
		} else if e.Expires.After(now) {
			exact[k] = e
		}
	}
	s.exact = exact
	s.seq++
	s.log, s.logBase = s.log[:0], s.seq
	s.mu.Unlock()
	s.rebuildLocked()
	s.loaded.Store(true)
}

// Sweep drops expired entries and rebuilds the filter when stale bits or load would push
// its false-positive rate past the design.
func (s *Set) Sweep(now time.Time) (removed int) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	for k, e := range s.exact {
		if !e.Expires.After(now) {
			delete(s.exact, k)
			removed++
		}
	}
	live := uint(len(s.exact))
	s.mu.Unlock()
	cur := s.snap.Load()
	total := cur.inserted + uint(len(s.pending))
	if total > cur.capacity || (total > live && total-live > live/2) {
		s.rebuildLocked()
	}
	return removed
}

// rebuildLocked builds a new filter from the exact set; it grows past expected entries so
// the filter never saturates. Caller holds wmu.
func (s *Set) rebuildLocked() {
	s.mu.RLock()
	n := s.expected
	if live := uint(len(s.exact)); live*2 > n {
		n = live * 2
	}
	b := bloom.NewWithEstimates(n, s.fpRate)
	for k := range s.exact {
		b.AddString(k)
	}
	inserted := uint(len(s.exact))
	s.mu.RUnlock()
	s.publish(&filter{bloom: b, inserted: inserted, capacity: n})
}

// publish swaps in a new big filter with an empty overlay (caller holds wmu, or is NewSet).
// Counting the bits of a large filter takes a few milliseconds: it happens only here.
func (s *Set) publish(f *filter) {
	f.recent = newOverlay(min(overlayCap, int(f.capacity)), s.fpRate)
	s.pending = s.pending[:0]
	s.snap.Store(f)
	fill := float64(f.bloom.BitSet().Count()) / float64(f.bloom.Cap())
	s.fill.Store(math.Float64bits(fill))
	s.estFP.Store(math.Float64bits(math.Pow(fill, float64(f.bloom.K()))))
}
