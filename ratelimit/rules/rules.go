// Package rules turns the RateLimitConfig of domain specgate into an immutable lookup table
// from request descriptors to limits (envoyproxy/ratelimit semantics: a descriptor without a
// value is a bucket per request value).
package rules

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/policy"
)

// KeyPrefix starts every counter key in the store.
const KeyPrefix = "sgrl:"

// maxRawValue is the longest request value used verbatim in a key; longer values (header
// values are client-controlled) are hashed so that keys stay bounded.
const maxRawValue = 64

// Rule is one limit: a leaf of the config.
type Rule struct {
	ID     int    // index in Table.Rules, for per-rule state of the caller
	Route  string // value of the first descriptor level (the route id)
	Kind   string // key kind, a metric label: "route", "client", "ip", "header" or "header+client"
	Limit  uint32
	Unit   rlsconf.RateLimitUnit
	Window time.Duration
	// PerValue rules count each request value apart; the others count one bucket.
	PerValue bool
	prefix   string
}

// Key is the store key of the bucket for a request value ("" unless PerValue).
//
// The prefix starts with a Redis Cluster hash tag, a hash of the route (the first level), so
// every counter of one route, and so every counter one request touches, lives in one slot:
// a request is counted on one shard, in one round trip, and a shard outage takes whole routes
// (which fail open or closed as a whole), never half of a request. Then comes a fixed-length
// hash of the rule's path, so two rules never share a key, whatever their values; the route id
// follows only to make keys readable.
func (r *Rule) Key(value string) string {
	if len(value) > maxRawValue {
		sum := sha256.Sum256([]byte(value))
		value = "#" + base64.RawURLEncoding.EncodeToString(sum[:16])
	}
	return r.prefix + value
}

// Table is an immutable, validated config.
type Table struct {
	Rules []*Rule
	root  node
}

type entry struct{ key, value string }

type node struct {
	exact map[entry]*node
	wild  map[string]*node // key → per-value leaf
	rule  *Rule
}

// ErrUnknown and ErrInvalid explain a descriptor that matched no rule; both are allowed.
var (
	ErrUnknown = errors.New("descriptor not in config")
	ErrInvalid = errors.New("descriptor with an empty key or value")
)

// Lookup returns the rule for the entries of a request descriptor, and the value that
// selects its bucket.
func (t *Table) Lookup(entries []*rlcommon.RateLimitDescriptor_Entry) (*Rule, string, error) {
	cur := &t.root
	var bucket string
	for _, e := range entries {
		k, v := e.GetKey(), e.GetValue()
		if k == "" || v == "" {
			return nil, "", ErrInvalid
		}
		if nx := cur.exact[entry{k, v}]; nx != nil {
			cur = nx
			continue
		}
		if nx := cur.wild[k]; nx != nil {
			if k == policy.DescPlan { // any other plan: the default, shared by the client's plans
				cur = nx
				continue
			}
			if bucket != "" { // several per-value levels (header+client): one bucket per pair
				v = bucket + "\x00" + v
			}
			cur, bucket = nx, v
			continue
		}
		return nil, "", ErrUnknown
	}
	if cur.rule == nil {
		return nil, "", ErrUnknown
	}
	return cur.rule, bucket, nil
}

var windows = map[rlsconf.RateLimitUnit]time.Duration{
	rlsconf.RateLimitUnit_SECOND: time.Second,
	rlsconf.RateLimitUnit_MINUTE: time.Minute,
	rlsconf.RateLimitUnit_HOUR:   time.Hour,
	rlsconf.RateLimitUnit_DAY:    24 * time.Hour,
}

// Build validates the configs of policy.Domain (others are skipped; a second config of the
// domain is an error) and builds their table. Every problem is reported.
func Build(cfgs []*rlsconf.RateLimitConfig) (*Table, error) {
	t := &Table{}
	var errs []error
	seen := 0
	for _, c := range cfgs {
		if c.GetDomain() != policy.Domain {
			continue
		}
		if seen++; seen > 1 {
			errs = append(errs, fmt.Errorf("config %q: a second config for domain %q", c.GetName(), policy.Domain))
			continue
		}
		b := builder{t: t, prefixes: map[string]string{}}
		b.level(&t.root, c.GetDescriptors(), nil)
		errs = append(errs, b.errs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

type builder struct {
	t        *Table
	errs     []error
	prefixes map[string]string // path hash → path, to refuse a (vanishingly unlikely) clash
}

func (b *builder) fail(path []entry, format string, a ...any) {
	b.errs = append(b.errs, fmt.Errorf("descriptor %s: %s", showPath(path), fmt.Sprintf(format, a...)))
}

func (b *builder) level(n *node, ds []*rlsconf.RateLimitDescriptor, path []entry) {
	for _, d := range ds {
		p := append(path[:len(path):len(path)], entry{d.GetKey(), d.GetValue()})
		if d.GetKey() == "" {
			b.fail(p, "empty key")
			continue
		}
		if d.GetShadowMode() || len(d.GetRateLimit().GetReplaces()) > 0 || d.GetRateLimit().GetName() != "" {
			b.fail(p, "shadow_mode, name and replaces are not supported")
		}
		child := &node{}
		if d.GetValue() == "" {
			if n.wild == nil {
				n.wild = map[string]*node{}
			}
			if n.wild[d.GetKey()] != nil {
				b.fail(p, "duplicate")
				continue
			}
			n.wild[d.GetKey()] = child
		} else {
			if n.exact == nil {
				n.exact = map[entry]*node{}
			}
			if n.exact[p[len(p)-1]] != nil {
				b.fail(p, "duplicate")
				continue
			}
			n.exact[p[len(p)-1]] = child
		}
		if rl := d.GetRateLimit(); rl != nil {
			b.rule(child, rl, p)
		} else if len(d.GetDescriptors()) == 0 {
			b.fail(p, "neither rate_limit nor descriptors")
		}
		b.level(child, d.GetDescriptors(), p)
	}
}

func (b *builder) rule(n *node, rl *rlsconf.RateLimitPolicy, path []entry) {
	w, ok := windows[rl.GetUnit()]
	switch {
	case rl.GetUnlimited():
		b.fail(path, "unlimited is not supported")
		return
	case !ok:
		b.fail(path, "unit %v is not SECOND, MINUTE, HOUR or DAY", rl.GetUnit())
		return
	case rl.GetRequestsPerUnit() == 0:
		b.fail(path, "requests_per_unit must be positive")
		return
	}
	leaf := path[len(path)-1]
	kind := leaf.key
	switch kind {
	case policy.DescLimit, policy.DescPlan:
		kind = policy.DescRoute
	case policy.DescIP:
		kind = "ip" // Envoy fixes the descriptor key (remote_address); the label says what it is
	}
	perValue := false
	for i, e := range path {
		if e.key == policy.DescPlan {
			continue // a plan selects the limit, not the bucket
		}
		if e.value == "" {
			if perValue && i == len(path)-1 { // client, then header: header+client
				kind = path[i].key + "+" + path[i-1].key
			}
			perValue = true
		}
	}
	// The unit is part of the identity: a new window length starts fresh counters, while
	// a new count for the same unit keeps them.
	h := sha256.New()
	for _, e := range path {
		fmt.Fprintf(h, "%s\x00%s\x00", e.key, e.value)
	}
	fmt.Fprintf(h, "%d", rl.GetUnit())
	sum := hex.EncodeToString(h.Sum(nil)[:8])
	if other, dup := b.prefixes[sum]; dup {
		b.fail(path, "key hash clashes with %s", other)
		return
	}
	b.prefixes[sum] = showPath(path)
	n.rule = &Rule{
		ID:       len(b.t.Rules),
		Route:    path[0].value,
		Kind:     kind,
		Limit:    rl.GetRequestsPerUnit(),
		Unit:     rl.GetUnit(),
		Window:   w,
		PerValue: perValue,
		prefix:   KeyPrefix + hashTag(path[0]) + ":" + sum + ":" + readable(path) + ":",
	}
	b.t.Rules = append(b.t.Rules, n.rule)
}

// hashTag is the Redis Cluster hash tag of the rules under one route entry: a hash, so that
// braces in a route id cannot end the tag early.
func hashTag(route entry) string {
	h := sha256.Sum256([]byte(route.key + "\x00" + route.value))
	return "{" + hex.EncodeToString(h[:4]) + "}"
}

// readable is the human part of a key: the path's values, bounded.
func readable(path []entry) string {
	var s strings.Builder
	for i, e := range path {
		if e.value == "" {
			break
		}
		if i > 0 {
			s.WriteByte('/')
		}
		s.WriteString(e.value)
	}
	if s.Len() > maxRawValue {
		return s.String()[:maxRawValue]
	}
	return s.String()
}

func showPath(path []entry) string {
	parts := make([]string, len(path))
	for i, e := range path {
		parts[i] = e.key + "=" + e.value
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ReadFile reads a RateLimitConfig in its protojson form, written as YAML or JSON.
func ReadFile(path string) (*rlsconf.RateLimitConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &rlsconf.RateLimitConfig{}
	if err := protojson.Unmarshal(j, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
