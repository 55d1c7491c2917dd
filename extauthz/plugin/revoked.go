//go:build wasip1

package main

import (
	"time"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/extauthz/verify"
)

// revoked is what a plugin VM holds of the revocations: a bloom filter of their keys and
// nothing else. A token whose key the filter may hold goes to authz, which has the entries (a
// subject's cut-off time, expiries) and decides exactly; so a false positive costs a hop, never
// a wrong answer, and the filter can be small (pluginFP: about 19 bits per entry, 4.8 MB at
// 10⁶ revocations sized twice over, per Envoy worker). The exact set of authz would cost each
// VM about 200 bytes per entry.
type revoked struct {
	f        *bloom.BloomFilter
	n, limit uint // keys added; beyond limit the false-positive rate has doubled: time for a full answer
}

const pluginFP = 1e-4

// newRevoked is the filter of a full answer's entries, sized for twice as many.
func newRevoked(entries []revocation.Entry, now time.Time) *revoked {
	limit := max(2*uint(len(entries)), 1024)
	r := &revoked{f: bloom.NewWithEstimates(limit, pluginFP), limit: limit}
	for _, e := range entries {
		r.add(e, now)
	}
	return r
}

func (r *revoked) add(e revocation.Entry, now time.Time) {
	if e.Expires.After(now) {
		r.f.AddString(e.Key)
		r.n++
	}
}

// full reports whether the filter holds more keys than it was sized for.
func (r *revoked) full() bool { return r.n > r.limit }

// revocationKeys are the keys that would revoke a token, as revocation.Set.Revoked reads them:
// its jti, or without one its content and whole hashes; its subject, qualified and bare.
func revocationKeys(id *verify.Identity, whole [32]byte) []string {
	var keys []string
	if id.JTI != "" {
		keys = append(keys, revocation.JTIKey(id.JTI))
	} else {
		keys = append(keys, revocation.TokenKey(id.Content), revocation.TokenKey(whole))
	}
	for _, sub := range []string{id.RevokedAs, id.Subject} {
		if sub != "" {
			keys = append(keys, revocation.SubjectKey(sub))
		}
	}
	return keys
}

// locations are a token's revocation keys hashed for filters of k hash functions: computed
// once per verified token, so that a request tests bits and hashes nothing.
type locations struct {
	k    uint
	locs [][]uint64
}

// mayHold reports whether the filter may hold one of the token's keys (l is refreshed when the
// filter's k differs from the one it was computed for).
func (r *revoked) mayHold(l *locations, keys []string) bool {
	if k := r.f.K(); l.k != k || len(l.locs) != len(keys) {
		l.k, l.locs = k, l.locs[:0]
		for _, key := range keys {
			l.locs = append(l.locs, bloom.Locations([]byte(key), k))
		}
	}
	for _, locs := range l.locs {
		if r.f.TestLocations(locs) {
			return true
		}
	}
	return false
}
