package translate

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/specgate/specgate/compiler/ir"
)

// Cache keeps the routes of each path group between translations, with their validation and
// content digest, so that a push changing one service of a hundred builds, validates and
// hashes only that service's routes. An entry is reused only for the same operations, the
// same routing fields of their services and the same options; entries the latest translation
// did not use are dropped. Routes in the cache are shared by the snapshots that hold them and
// never modified. Output is the same, byte for byte, with or without a cache.
type Cache struct {
	mu   sync.Mutex
	opts [32]byte
	// What the last translation used, one map per translator (listener): kept as they are,
	// not merged, so that a push copies nothing.
	groups    []map[[32]byte]groupEntry
	templates []map[string]ir.Template // parsed paths (ir.Template is never modified)
	// guarded are the shared table's guarded copies of routes (share.go), validated, by the
	// source route's digest and the guard: a push re-guards only the routes that changed.
	guarded map[[32]byte]guardedRoute
}

type guardedRoute struct {
	route  *routev3.Route
	digest [32]byte
}

// groupEntry is one path group's routes, validated, with the digest of each.
type groupEntry struct {
	routes  []*routev3.Route
	digests [][32]byte
}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{} }

func (c *Cache) group(key [32]byte) (groupEntry, bool) {
	for _, m := range c.groups {
		if e, ok := m[key]; ok {
			return e, true
		}
	}
	return groupEntry{}, false
}

func (c *Cache) template(path string) (ir.Template, bool) {
	for _, m := range c.templates {
		if t, ok := m[path]; ok {
			return t, true
		}
	}
	return ir.Template{}, false
}

// begin starts a translation with opts and the model's settings; a change of either empties
// the cache. Until end, translators only read groups and templates, so that the listeners can
// be built at once.
func (c *Cache) begin(opts Options, set ir.Settings) {
	c.mu.Lock()
	o, _ := json.Marshal(struct {
		Options
		ir.Settings
	}{opts, set})
	if key := sha256.Sum256(o); key != c.opts {
		c.opts, c.groups, c.guarded = key, nil, nil
	}
}

// end keeps what this translation's translators used.
func (c *Cache) end(used []*translator) {
	c.groups, c.templates = nil, nil
	for _, t := range used {
		c.groups = append(c.groups, t.used)
		c.templates = append(c.templates, t.templates)
	}
	c.mu.Unlock()
}

// fingerprints holds the JSON of each service's routing fields and of each operation, for the
// translator (listener) that keys its groups with them.
type fingerprints struct {
	svc map[*ir.Service][]byte
	op  map[*ir.Operation][]byte
}

// groupKey is the key of one path's routes: the routes as the model gives them (their JSON,
// so that a new field of ir.Route is part of the key), and each of their services (but the
// operations) and operations, written once however many of the path's routes name it.
func (t *translator) groupKey(group []ir.Route) [32]byte {
	f := &t.prints
	h := sha256.New()
	rb, _ := json.Marshal(group)
	h.Write(rb)
	h.Write([]byte{0})
	var svcs []*ir.Service
	var ops []*ir.Operation
	for _, r := range group {
		if svc := t.svcs[r.Service]; svc != nil && !slices.Contains(svcs, svc) {
			svcs = append(svcs, svc)
			sb, ok := f.svc[svc]
			if !ok {
				meta := *svc
				meta.Operations = nil
				sb, _ = json.Marshal(meta)
				f.svc[svc] = sb
			}
			h.Write(sb)
			h.Write([]byte{0})
		}
		if op := t.ops[r.Operation]; op != nil && !slices.Contains(ops, op) {
			ops = append(ops, op)
			ob, ok := f.op[op]
			if !ok {
				ob, _ = json.Marshal(op)
				f.op[op] = ob
			}
			h.Write(ob)
			h.Write([]byte{0})
		}
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// groupRoutes returns the group's routes from the cache, or builds them with build. Routes
// from the cache are known valid and their digests known: res.validate and res.Version skip
// the work for them.
func (t *translator) groupRoutes(group []ir.Route, build func() []*routev3.Route) []*routev3.Route {
	if t.cache == nil {
		return build()
	}
	key := t.groupKey(group)
	e, ok := t.cache.group(key)
	if !ok {
		before := t.err
		e.routes = build()
		for _, r := range e.routes {
			if err := r.ValidateAll(); err != nil {
				t.fail("route %s: %w", r.Name, err)
			}
			d, err := digest(r)
			if err != nil {
				t.fail("route %s: %w", r.Name, err)
			}
			e.digests = append(e.digests, d)
		}
		if t.err != before {
			return e.routes // refused: never cached, so the next translation finds it again
		}
	}
	t.used[key] = e
	for i, r := range e.routes {
		t.digests[r] = e.digests[i]
	}
	return e.routes
}

// routeDigests are the digests of the routes known valid, one map per translator.
type routeDigests []map[*routev3.Route][32]byte

func (d routeDigests) get(r *routev3.Route) ([32]byte, bool) {
	for _, m := range d {
		if v, ok := m[r]; ok {
			return v, true
		}
	}
	return [32]byte{}, false
}

// digest is the content hash of one route, for Resources.Version.
func digest(r *routev3.Route) ([32]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	return sha256.Sum256(b), err
}
