package ratelimit

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/specgate/specgate/policy"
)

// overflow is the bucket of the header values past rateLimit.maxHeaderValues. It holds a NUL,
// which no HTTP header value can: no client picks it by sending it.
const overflow = "\x00overflow"

// valueBound admits the first max distinct values of one header-keyed rule in each window of
// the rule; the others go to the overflow bucket. Per replica: a flood of random values costs
// the store max counters per window and replica, not one per request.
type valueBound struct {
	max int

	mu     sync.Mutex
	window int64 // the window the set is of, in windows since the epoch
	seen   map[string]struct{}
}

// bucket is value itself or, once the window holds max other values, its overflow bucket.
// A header+client value (client, NUL, header) overflows into the client's own bucket, so one
// client's flood does not spill into other clients' counts.
func (b *valueBound) bucket(value string, now time.Time, window time.Duration) (string, bool) {
	w := now.UnixNano() / int64(window)
	b.mu.Lock()
	defer b.mu.Unlock()
	if w != b.window || b.seen == nil {
		b.window, b.seen = w, make(map[string]struct{}, min(b.max, 1024))
	}
	if _, ok := b.seen[value]; ok || len(b.seen) < b.max {
		b.seen[value] = struct{}{}
		return value, false
	}
	if client, _, ok := strings.Cut(value, "\x00"); ok {
		return client + "\x00" + overflow, true
	}
	return overflow, true
}

// ipBucket counts an IPv6 address by its prefix of bits: the ip key's value (an address, from
// Envoy's remote_address) and a client of anonymous requests ("ip:<address>", alone or before
// a header value) name the prefix instead. Anything else is left as it is.
func ipBucket(kind, value string, bits int) string {
	switch kind {
	case "ip":
		return maskIPv6(value, bits)
	case "client", "header+client":
		rest, ok := strings.CutPrefix(value, policy.AnonymousClientPrefix)
		if !ok {
			return value
		}
		addr, tail, _ := strings.Cut(rest, "\x00")
		masked := policy.AnonymousClient(maskIPv6(addr, bits))
		if len(rest) > len(addr) {
			masked += "\x00" + tail
		}
		return masked
	}
	return value
}

func maskIPv6(s string, bits int) string {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || bits >= 128 {
		return s
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return s
	}
	return p.String()
}
