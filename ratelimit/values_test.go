package ratelimit

import (
	"fmt"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
)

const boundsYAML = `
name: specgate
domain: specgate
descriptors:
- key: route
  value: search
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: header, rate_limit: {unit: MINUTE, requests_per_unit: 2}}]
- key: route
  value: tenant
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: client, descriptors: [{key: header, rate_limit: {unit: MINUTE, requests_per_unit: 2}}]}]
- key: route
  value: byip
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: remote_address, rate_limit: {unit: MINUTE, requests_per_unit: 1}}]
- key: route
  value: byclient
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: client, rate_limit: {unit: MINUTE, requests_per_unit: 1}}]
`

// A client that chooses a header key's value cannot make a counter per request: past
// maxHeaderValues values in a window, new values share one overflow bucket (per client for
// header+client keys), values seen before keep their own, and the next window starts afresh.
func TestHeaderValuesAreBounded(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.Set(t0)
	cfg := config.Default()
	cfg.RateLimit.MaxHeaderValues = 3
	s, c := start(t, Options{Config: cfg, LimitsFile: writeFile(t, boundsYAML), Clock: clock})
	search := func(v string) *rlsv3.RateLimitResponse {
		return ask(t, c, d("route", "search", "limit", "0", "header", v))
	}

	for i := range 3 { // three values: three buckets of 2
		for range 2 {
			if r := search(fmt.Sprint("tenant-", i)); r.OverallCode != ok {
				t.Fatalf("tenant-%d within its own limit: %v", i, r)
			}
		}
	}
	// A flood of fresh values: they share the overflow bucket, which holds 2.
	codes := map[bool]int{}
	for i := range 20 {
		codes[search(fmt.Sprint("random-", i)).OverallCode == over]++
	}
	if codes[false] != 2 || codes[true] != 18 {
		t.Fatalf("20 fresh values past the bound: %d allowed, %d refused; want 2 and 18 (one overflow bucket)", codes[false], codes[true])
	}
	if n := metric(t, s.Service(), "specgate_ratelimit_value_overflow_total", "route", "search"); n != 20 {
		t.Errorf("overflow counted %v, want 20", n)
	}
	// A value counted before the flood keeps its own bucket (full: refused, not by overflow).
	if r := search("tenant-0"); r.OverallCode != over {
		t.Fatalf("tenant-0 past its own limit: %v", r)
	}

	// header+client: one client's flood fills its own overflow bucket, not another's.
	tenant := func(client, v string) bool {
		return ask(t, c, d("route", "tenant", "limit", "0", "client", client, "header", v)).OverallCode == ok
	}
	for i := range 3 {
		tenant("alice", fmt.Sprint("t", i))
	}
	for i := range 10 {
		tenant("mallory", fmt.Sprint("x", i))
	}
	if !tenant("alice", "t9") || !tenant("alice", "t10") || tenant("alice", "t11") {
		t.Fatal("alice's values past the bound: want her own overflow bucket of 2")
	}

	// The next window counts values afresh.
	clock.Set(t0.Add(time.Minute))
	for i := range 3 {
		if r := search(fmt.Sprint("new-", i)); r.OverallCode != ok {
			t.Fatalf("new window, value %d: %v", i, r)
		}
	}
}

// IPv6 clients are counted by /64 (rateLimit.ipv6Prefix): the ip key and the ip:<address>
// client of anonymous requests. Another address of the same /64 is the same client; IPv4,
// another /64 and named clients are not affected.
func TestIPv6ClientsCountedByPrefix(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.Set(t0)
	_, c := start(t, Options{Config: config.Default(), LimitsFile: writeFile(t, boundsYAML), Clock: clock})
	allowed := func(route, key, value string) bool {
		return ask(t, c, d("route", route, "limit", "0", key, value)).OverallCode == ok
	}
	for _, tc := range []struct {
		route, key, first, second string
		sameBucket                bool
	}{
		{"byip", "remote_address", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"byip", "remote_address", "2001:db8:1:3::1", "2001:db8:1:4::1", false},
		{"byip", "remote_address", "192.0.2.1", "192.0.2.2", false},
		{"byclient", "client", "ip:2001:db8:5:6::1", "ip:2001:db8:5:6::2", true},
		{"byclient", "client", "svc-a", "svc-b", false},
	} {
		if !allowed(tc.route, tc.key, tc.first) {
			t.Fatalf("%s first request from %s refused", tc.route, tc.first)
		}
		if got := !allowed(tc.route, tc.key, tc.second); got != tc.sameBucket {
			t.Errorf("%s: %s after %s counted in the same bucket: %v, want %v", tc.route, tc.second, tc.first, got, tc.sameBucket)
		}
	}
}
