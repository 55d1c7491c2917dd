package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
)

// limitsYAML is what the compiler emits for two routes: orders.list with a route-wide
// limit, a per-client and a per-address one, orders.get with a per-header one.
const limitsYAML = `
name: specgate
domain: specgate
descriptors:
- key: route
  value: orders.list
  descriptors:
  - {key: limit, value: "0", rate_limit: {unit: SECOND, requests_per_unit: 100}}
  - key: limit
    value: "1"
    descriptors: [{key: client, rate_limit: {unit: MINUTE, requests_per_unit: 10}}]
  - key: limit
    value: "2"
    descriptors: [{key: remote_address, rate_limit: {unit: DAY, requests_per_unit: 1000}}]
- key: route
  value: orders.get
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: header, rate_limit: {unit: HOUR, requests_per_unit: 5}}]
`

func load(t *testing.T, doc string) *rlsconf.RateLimitConfig {
	t.Helper()
	p := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func desc(kv ...string) []*rlcommon.RateLimitDescriptor_Entry {
	var es []*rlcommon.RateLimitDescriptor_Entry
	for i := 0; i < len(kv); i += 2 {
		es = append(es, &rlcommon.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return es
}

func TestLookup(t *testing.T) {
	t.Parallel()
	tab, err := Build([]*rlsconf.RateLimitConfig{load(t, limitsYAML)})
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rules) != 4 {
		t.Fatalf("%d rules, want 4", len(tab.Rules))
	}
	cases := []struct {
		name    string
		entries []*rlcommon.RateLimitDescriptor_Entry
		kind    string
		limit   uint32
		window  time.Duration
		bucket  string
		err     error
	}{
		{"route kind", desc("route", "orders.list", "limit", "0"), "route", 100, time.Second, "", nil},
		{"client kind", desc("route", "orders.list", "limit", "1", "client", "sub:alice"), "client", 10, time.Minute, "sub:alice", nil},
		{"ip kind", desc("route", "orders.list", "limit", "2", "remote_address", "10.0.0.1"), "ip", 1000, 24 * time.Hour, "10.0.0.1", nil},
		{"header kind", desc("route", "orders.get", "limit", "0", "header", "x"), "header", 5, time.Hour, "x", nil},
		{"unknown route", desc("route", "nope", "limit", "0"), "", 0, 0, "", ErrUnknown},
		{"unknown limit", desc("route", "orders.list", "limit", "7"), "", 0, 0, "", ErrUnknown},
		{"missing per-value entry", desc("route", "orders.list", "limit", "1"), "", 0, 0, "", ErrUnknown},
		{"extra entry", desc("route", "orders.list", "limit", "0", "ip", "1.2.3.4"), "", 0, 0, "", ErrUnknown},
		{"wrong key kind", desc("route", "orders.list", "limit", "1", "ip", "1.2.3.4"), "", 0, 0, "", ErrUnknown},
		{"empty value", desc("route", "orders.list", "limit", "1", "client", ""), "", 0, 0, "", ErrInvalid},
		{"empty key", desc("", "orders.list"), "", 0, 0, "", ErrInvalid},
		{"no entries", nil, "", 0, 0, "", ErrUnknown},
	}
	for _, c := range cases {
		r, bucket, err := tab.Lookup(c.entries)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if r.Kind != c.kind || r.Limit != c.limit || r.Window != c.window || bucket != c.bucket || r.Route != c.entries[0].Value {
			t.Errorf("%s: got %+v bucket %q", c.name, r, bucket)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	tab, err := Build([]*rlsconf.RateLimitConfig{load(t, limitsYAML)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range tab.Rules {
		for _, v := range []string{"", "sub:alice", strings.Repeat("a", 10_000), strings.Repeat("a", 9_999) + "b"} {
			k := r.Key(v)
			if seen[k] {
				t.Errorf("key %q twice", k)
			}
			seen[k] = true
			if len(k) > 5+10+1+16+1+64+1+64 {
				t.Errorf("key of %d bytes for a %d-byte value", len(k), len(v))
			}
		}
	}
	r, _, _ := tab.Lookup(desc("route", "orders.list", "limit", "1", "client", "sub:alice"))
	if k := r.Key("sub:alice"); !strings.HasSuffix(k, ":orders.list/1:sub:alice") || !strings.HasPrefix(k, KeyPrefix) {
		t.Errorf("key %q is not readable", k)
	}
}

// Every counter of one route carries the same Redis Cluster hash tag, so the keys one request
// counts share a slot; another route's tag differs, so routes spread over the shards.
func TestKeysOfARouteShareAHashTag(t *testing.T) {
	t.Parallel()
	tab, err := Build([]*rlsconf.RateLimitConfig{load(t, limitsYAML)})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]map[string]bool{} // route → tags of its keys
	for _, r := range tab.Rules {
		k := r.Key("sub:alice")
		open, end := strings.IndexByte(k, '{'), strings.IndexByte(k, '}')
		if open != len(KeyPrefix) || end < open+2 {
			t.Fatalf("key %q has no hash tag right after the prefix", k)
		}
		if tags[r.Route] == nil {
			tags[r.Route] = map[string]bool{}
		}
		tags[r.Route][k[open:end+1]] = true
	}
	if len(tags["orders.list"]) != 1 || len(tags["orders.get"]) != 1 {
		t.Fatalf("want one tag per route, got %v", tags)
	}
	for tag := range tags["orders.list"] {
		if tags["orders.get"][tag] {
			t.Error("two routes share a hash tag")
		}
	}
}

// header+client: a per-value level under another, one bucket per pair of values.
func TestNestedPerValueLevels(t *testing.T) {
	t.Parallel()
	tab, err := Build([]*rlsconf.RateLimitConfig{load(t, `
domain: specgate
descriptors:
- key: route
  value: r
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: client, descriptors: [{key: header, rate_limit: {unit: MINUTE, requests_per_unit: 2}}]}]
`)})
	if err != nil {
		t.Fatal(err)
	}
	bucket := func(client, tenant string) string {
		r, b, err := tab.Lookup(desc("route", "r", "limit", "0", "client", client, "header", tenant))
		if err != nil || !r.PerValue || r.Kind != "header+client" {
			t.Fatalf("lookup %s %s: %v %+v", client, tenant, err, r)
		}
		return r.Key(b)
	}
	if bucket("sub:a", "t1") == bucket("sub:b", "t1") || bucket("sub:a", "t1") == bucket("sub:a", "t2") || bucket("sub:a", "t1") != bucket("sub:a", "t1") {
		t.Error("want one bucket per client and header value")
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	bad := load(t, `
domain: specgate
descriptors:
- key: route
  value: a
  descriptors:
  - {key: limit, value: "0", rate_limit: {unit: UNKNOWN, requests_per_unit: 1}}
  - {key: limit, value: "1", rate_limit: {unit: SECOND}}
  - {key: limit, value: "1", rate_limit: {unit: SECOND, requests_per_unit: 1}}
  - key: limit
    value: "2"
    descriptors: [{key: client, descriptors: [{key: x, value: yy, rate_limit: {unit: SECOND, requests_per_unit: 1}}]}]
  - {key: limit, value: "3"}
  - {key: limit, value: "4", rate_limit: {unit: SECOND, requests_per_unit: 1, unlimited: true}}
  - {key: limit, value: "5", shadow_mode: true, rate_limit: {unit: SECOND, requests_per_unit: 1}}
- {key: "", value: b}
`)
	_, err := Build([]*rlsconf.RateLimitConfig{bad, bad})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"unit UNKNOWN", "requests_per_unit must be positive", "duplicate",
		"neither rate_limit nor descriptors", "unlimited", "shadow_mode", "empty key", "a second config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	// Other domains are not ours: skipped, not errors.
	other := &rlsconf.RateLimitConfig{Domain: "other", Descriptors: bad.Descriptors}
	if tab, err := Build([]*rlsconf.RateLimitConfig{other}); err != nil || len(tab.Rules) != 0 {
		t.Errorf("other domain: %v, %v", tab, err)
	}
}

// A limit with quota plans: the request's plan picks its limit, any other plan (and "*", no
// plan) the default; the bucket is the client's either way, so a client whose plan is not
// listed shares one default bucket across plan names.
func TestPlans(t *testing.T) {
	tb, err := Build([]*rlsconf.RateLimitConfig{load(t, `
name: specgate
domain: specgate
descriptors:
- key: route
  value: api.search
  descriptors:
  - key: limit
    value: "0"
    descriptors:
    - {key: plan, value: gold, descriptors: [{key: client, rate_limit: {unit: MINUTE, requests_per_unit: 1000}}]}
    - {key: plan, descriptors: [{key: client, rate_limit: {unit: MINUTE, requests_per_unit: 60}}]}
  - key: limit
    value: "1"
    descriptors:
    - {key: plan, value: gold, rate_limit: {unit: DAY, requests_per_unit: 9}}
    - {key: plan, rate_limit: {unit: DAY, requests_per_unit: 3}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit, plan, client string
		want                uint32
		kind, bucket        string
	}{
		{"0", "gold", "key:acme", 1000, "client", "key:acme"},
		{"0", "silver", "key:acme", 60, "client", "key:acme"},
		{"0", "*", "ip:198.51.100.1", 60, "client", "ip:198.51.100.1"},
		{"1", "gold", "", 9, "route", ""},
		{"1", "free", "", 3, "route", ""},
	} {
		kv := []string{"route", "api.search", "limit", tc.limit, "plan", tc.plan}
		if tc.client != "" {
			kv = append(kv, "client", tc.client)
		}
		r, bucket, err := tb.Lookup(desc(kv...))
		if err != nil || r.Limit != tc.want || r.Kind != tc.kind || bucket != tc.bucket {
			t.Errorf("limit %s, plan %s: %+v bucket %q %v; want %d %s %q", tc.limit, tc.plan, r, bucket, err, tc.want, tc.kind, tc.bucket)
		}
	}
}
