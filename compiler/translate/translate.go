// Package translate turns the gateway model (package ir) into Envoy resources: one listener
// per exposure, their route configurations, one cluster per service, and the rate-limit
// service's RateLimitConfig. It is pure and deterministic: the same model gives the same bytes.
// One file per feature: routes (with pathforms and tokenless), listener (with filters,
// accesslog, tracing and stats), clusters, tls, authz, ratelimit, cors, bootstrap; cache.go
// reuses the routes of every path whose model did not change.
package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	rlconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/compiler/ir"
)

// Names of the listeners, their route configurations and the service clusters that every
// Envoy bootstrap (static or ADS) must define.
const (
	ListenerPublic   = ir.ListenerPublic
	ListenerInternal = ir.ListenerInternal
	ClusterAuthz     = "specgate_authz"
	ClusterRateLimit = "specgate_ratelimit"
	ClusterValidate  = "specgate_validate"
	ClusterXDS       = "specgate_xds"
)

// Options say how the resources are served; what they hold, gateway-wide settings included,
// is the model's (ir.Plan).
type Options struct {
	// ListenAddress is the IP the listeners bind (default 0.0.0.0).
	ListenAddress string
	// InlineRoutes puts the route configurations inside the listeners (a static bootstrap)
	// instead of referencing them over RDS through ADS.
	InlineRoutes bool
	// RateLimitTimeout bounds Envoy's call to the rate-limit service (default 100ms).
	RateLimitTimeout time.Duration
	// Cache, when set, reuses the routes of unchanged path groups from the last translation
	// with the same Cache (a control plane's); the output is the same without it.
	Cache *Cache `json:"-"`
}

func (o Options) withDefaults() Options {
	if o.ListenAddress == "" {
		o.ListenAddress = "0.0.0.0"
	}
	if o.RateLimitTimeout == 0 {
		o.RateLimitTimeout = 100 * time.Millisecond
	}
	return o
}

// Resources is everything the control plane serves for one version of the specs.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Secrets   []*tlsv3.Secret // the HTTPS listener's certificate and backend TLS profiles' files
	RateLimit *rlconfv3.RateLimitConfig
	// Schemas are the descriptions specgate validate checks requests against (validate.go).
	Schemas []*corev3.TypedExtensionConfig

	digests routeDigests // routes already validated, with their content hash
	inline  bool         // the route configurations were validated inside the listeners
}

// Translate builds the Envoy resources of gw, a planned model (ir.Plan): a plain mapping of its
// listeners' route tables, services and settings. Every inner message is validated before it
// is packed into an Any (Validate does not descend into Any), and the result once more as a
// whole.
func Translate(gw ir.Gateway, opts Options) (*Resources, error) {
	if err := gw.Validate(); err != nil {
		return nil, fmt.Errorf("translate: invalid model: %w", err)
	}
	if len(gw.Listeners) == 0 {
		return nil, errors.New("translate: the model has no listeners (ir.Plan gives them)")
	}
	opts = opts.withDefaults()
	t := newTranslator(opts, gw)
	var subs []*translator
	if t.cache != nil {
		t.cache.begin(opts, gw.Settings)
		defer func() { t.cache.end(subs) }()
	}
	res := &Resources{RateLimit: rateLimitConfig(gw), Schemas: schemas(gw), inline: opts.InlineRoutes}
	// The listeners are independent and hold nearly all the work: one core each.
	subs = make([]*translator, len(gw.Listeners))
	rcs := make([]*routev3.RouteConfiguration, len(gw.Listeners))
	ls := make([]*listenerv3.Listener, len(gw.Listeners))
	var wg sync.WaitGroup
	for i, l := range gw.Listeners {
		subs[i] = t.fork()
		wg.Go(func() { rcs[i] = subs[i].routeConfig(l) })
	}
	wg.Wait()
	for _, sub := range subs {
		res.digests = append(res.digests, sub.digests)
	}
	res.Routes = rcs
	if len(rcs) > 1 { // one table for every listener (share.go)
		res.Routes = []*routev3.RouteConfiguration{t.shareRoutes(gw.Listeners, rcs, res.digests)}
		res.digests = append(res.digests, t.guardedDigests)
	}
	for i, l := range gw.Listeners {
		if len(rcs) > 1 {
			ls[i] = subs[i].listener(union(l, gw.Listeners), res.Routes[0])
			ls[i].FilterChains[0].Filters = slices.Insert(ls[i].FilterChains[0].Filters, 0, t.listenerStateFilter(l.Name))
		} else {
			ls[i] = subs[i].listener(l, rcs[i])
		}
		t.err = errors.Join(t.err, subs[i].err)
	}
	res.Listeners = ls
	for i, l := range gw.Listeners {
		if l.TLS != nil {
			tl, secret := t.tlsListener(ls[i], l)
			res.Listeners = append(res.Listeners, tl)
			res.Secrets = append(res.Secrets, secret)
		}
	}
	for _, s := range gw.Services {
		c, secrets := t.serviceCluster(s)
		res.Clusters = append(res.Clusters, c)
		for _, sc := range secrets {
			if !slices.ContainsFunc(res.Secrets, func(have *tlsv3.Secret) bool { return have.Name == sc.Name }) {
				res.Secrets = append(res.Secrets, sc)
			}
		}
	}
	if gw.Settings.Tracing.OTLP != "" {
		res.Clusters = append(res.Clusters, t.otlpCluster())
	}
	if t.anyValidation() {
		res.Clusters = append(res.Clusters, t.validateCluster())
	}
	if t.plugin() {
		res.Clusters = append(res.Clusters, t.feedCluster())
	}
	if t.err != nil {
		return nil, t.err
	}
	if err := res.validate(); err != nil {
		return nil, err
	}
	return res, nil
}

// translator carries the options and the model, and collects packing errors so builders stay
// plain.
type translator struct {
	opts    Options
	set     ir.Settings
	svcs    map[string]*ir.Service   // by name
	ops     map[string]*ir.Operation // by ID
	err     error
	cache   *Cache
	prints  fingerprints
	digests map[*routev3.Route][32]byte // of routes known valid (from the cache)
	// guardedDigests are the shared table's guarded routes, validated (share.go).
	guardedDigests map[*routev3.Route][32]byte
	templates      map[string]ir.Template  // parsed paths
	used           map[[32]byte]groupEntry // the cache's path groups this translation used

	keepRegex map[string]string // otherHeaders by allow-list
}

func newTranslator(opts Options, gw ir.Gateway) *translator {
	t := &translator{opts: opts, set: gw.Settings, svcs: map[string]*ir.Service{}, ops: map[string]*ir.Operation{}}
	for si := range gw.Services {
		svc := &gw.Services[si]
		t.svcs[svc.Name] = svc
		for oi := range svc.Operations {
			t.ops[svc.Operations[oi].ID] = &svc.Operations[oi]
		}
	}
	return t.fork()
}

// fork is a translator for one goroutine: the same options, model and cache (read only until
// the translation ends), its own maps and errors.
func (t *translator) fork() *translator {
	return &translator{opts: t.opts, set: t.set, svcs: t.svcs, ops: t.ops, cache: t.opts.Cache,
		digests: map[*routev3.Route][32]byte{}, templates: map[string]ir.Template{}, used: map[[32]byte]groupEntry{},
		prints: fingerprints{svc: map[*ir.Service][]byte{}, op: map[*ir.Operation][]byte{}}}
}

// pack validates m and wraps it in an Any.
func (t *translator) pack(m proto.Message) *anypb.Any {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.err = errors.Join(t.err, fmt.Errorf("translate: %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
		}
	}
	// Deterministic: map fields (context extensions, per-filter configs) otherwise serialize
	// in random order and the version hash would change between identical compiles.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("translate: pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
	}
	return a
}

func (r *Resources) validate() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	check := func(m proto.Message) {
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("translate: %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
				mu.Unlock()
			}
		}
	}
	for _, m := range r.messages() {
		rc, ok := m.(*routev3.RouteConfiguration)
		if !ok {
			check(m)
			continue
		}
		if r.inline {
			continue // packing each listener validated its connection manager, routes included
		}
		// A route configuration is checked as its shell and each route not known valid, each
		// configuration on a core of its own.
		wg.Go(func() {
			shell, routes := splitRoutes(rc)
			check(shell)
			for _, rt := range routes {
				if _, known := r.digests.get(rt); !known {
					check(rt)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// splitRoutes returns a copy of rc without its virtual hosts' routes, and the routes in order.
func splitRoutes(rc *routev3.RouteConfiguration) (*routev3.RouteConfiguration, []*routev3.Route) {
	shell := &routev3.RouteConfiguration{}
	copyFields(rc, shell, "virtual_hosts")
	var routes []*routev3.Route
	for _, vh := range rc.VirtualHosts {
		vs := &routev3.VirtualHost{}
		copyFields(vh, vs, "routes")
		shell.VirtualHosts = append(shell.VirtualHosts, vs)
		routes = append(routes, vh.Routes...)
	}
	return shell, routes
}

// copyFields sets every populated field of from on to, but the one named except (shallow).
func copyFields(from, to proto.Message, except protoreflect.Name) {
	dst := to.ProtoReflect()
	from.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != except {
			dst.Set(fd, v)
		}
		return true
	})
}

func (r *Resources) messages() []proto.Message {
	var ms []proto.Message
	for _, l := range r.Listeners {
		ms = append(ms, l)
	}
	for _, rc := range r.Routes {
		ms = append(ms, rc)
	}
	for _, c := range r.Clusters {
		ms = append(ms, c)
	}
	for _, sc := range r.Secrets {
		ms = append(ms, sc)
	}
	if r.RateLimit != nil {
		ms = append(ms, r.RateLimit)
	}
	return ms
}

// Version is a content hash of the resources: the same specs give the same version on every
// control-plane replica and after a restart, so connected Envoys see no churn. A route
// configuration is hashed as its shell and the digest of each route, so that routes from a
// Cache are not marshalled again.
func (r *Resources) Version() (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	write := func(m proto.Message) error {
		b, err := opts.Marshal(m)
		if err != nil {
			return fmt.Errorf("version: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", m.ProtoReflect().Descriptor().FullName(), len(b))
		h.Write(b)
		return nil
	}
	for _, m := range r.messages() {
		rc, ok := m.(*routev3.RouteConfiguration)
		if !ok {
			if err := write(m); err != nil {
				return "", err
			}
			continue
		}
		shell, routes := splitRoutes(rc)
		if err := write(shell); err != nil {
			return "", err
		}
		for _, rt := range routes {
			d, known := r.digests.get(rt)
			if !known {
				var err error
				if d, err = digest(rt); err != nil {
					return "", fmt.Errorf("version: %w", err)
				}
			}
			h.Write(d[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
