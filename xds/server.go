// Package xds is specgate's control plane: it compiles the spec directory, serves the result to
// every Envoy (and the RateLimitConfig to every rate-limit replica) over ADS, and takes new
// specs from the directory watcher and the push API. Only a snapshot that compiled, translated,
// validated (and, with an Envoy binary, passed `envoy --mode validate`) is ever served.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfigservice "github.com/envoyproxy/go-control-plane/ratelimit/service/ratelimit/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/grpcserver"
	"github.com/specgate/specgate/xds/specstore"
)

// Options configure the control plane.
type Options struct {
	// Store keeps the spec sets; nil: a directory store on SpecDir (specstore.OpenDir).
	Store specstore.Store
	// SpecDir is the spec directory: the store when Store is nil, and where $refs to files
	// outside the set are looked up (with a Store and no SpecDir: nowhere, only the set).
	SpecDir string
	// SeedDir, when set, is committed as the first revision of an empty store.
	SeedDir string
	Gateway config.Gateway
	// GRPCAddr serves ADS (default :18000); HTTPAddr the push API and metrics (default :18001).
	GRPCAddr, HTTPAddr string
	// AdminToken protects the push API (Authorization: Bearer). Empty refuses every push.
	AdminToken string
	// EnvoyBin, when set, runs `envoy --mode validate` on every candidate config: a config a
	// real Envoy would reject is refused like a compile error.
	EnvoyBin string
	// ListenAddress is the IP Envoy's listeners bind (default 0.0.0.0).
	ListenAddress string
	// Debounce groups the file events of one change (default 200ms).
	Debounce time.Duration
	// Resync reads the store's live set this often even without a notice (default 1m).
	Resync time.Duration
	// MaxSpecBytes bounds a file pushed alone (default 32 MiB); MaxChangeBytes a change set's
	// request (default 48 MiB: a 100-service, 20 MB fleet is 28 MB of JSON).
	MaxSpecBytes, MaxChangeBytes int64
	Logger                       *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.GRPCAddr == "" {
		o.GRPCAddr = ":18000"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":18001"
	}
	if o.Debounce == 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.Resync == 0 {
		o.Resync = time.Minute
	}
	if o.MaxSpecBytes == 0 {
		o.MaxSpecBytes = 32 << 20
	}
	if o.MaxChangeBytes == 0 {
		o.MaxChangeBytes = 48 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// fleet is the one node-hash key: every Envoy and every rate-limit replica gets the same
// snapshot, whatever its node id.
type fleet struct{}

func (fleet) ID(*corev3.Node) string { return "specgate" }

// state is one accepted set of specs: its revision in the store, and what it compiled to.
type state struct {
	version  string // of the Envoy resources (a content hash)
	revision specstore.Revision
	digest   string // of files (specstore.SetDigest); differs from revision.Digest until recorded
	files    map[string][]byte
	gw       ir.Gateway
}

// service finds a service of the state by name (nil if absent).
func (st *state) service(name string) *ir.Service {
	for i := range st.gw.Services {
		if st.gw.Services[i].Name == name {
			return &st.gw.Services[i]
		}
	}
	return nil
}

// Server is the control plane.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   cache.SnapshotCache
	metrics *metrics
	store   specstore.Store
	loader  *compiler.Loader // parsed files by content: a push re-reads only what changed
	routes  *translate.Cache // translated path groups: a push rebuilds only what changed
	mu      sync.Mutex       // serializes reloads and changes
	current atomic.Pointer[state]
	// storeRev is the store's live revision as last read (under mu): what a change set
	// expects, even when that revision did not compile here.
	storeRev int64
	// reading admits one change request's body at a time: each may be tens of MB.
	reading chan struct{}
}

// New creates a control plane; Run serves it.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.Gateway.Validate(); err != nil {
		return nil, err
	}
	// The authz plugin reads its feed with a credential derived from the admin token, which
	// itself stays out of Envoy's config.
	opts.Gateway.Authz.Plugin.Credential = feed.Credential(opts.AdminToken)
	if opts.Store == nil {
		d, err := specstore.OpenDir(opts.SpecDir, 0)
		if err != nil {
			return nil, err
		}
		opts.Store = d
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(), store: opts.Store, loader: compiler.NewLoader(), routes: translate.NewCache(),
		reading: make(chan struct{}, 1)}
	s.cache = cache.NewSnapshotCache(true, fleet{}, slogAdapter{opts.Logger})
	if opts.SeedDir != "" {
		if err := s.seed(context.Background()); err != nil {
			return nil, err
		}
	}
	if _, err := s.Reload("startup"); err != nil {
		s.log.Error("initial specs refused; serving nothing until a good version arrives", "err", err)
	}
	return s, nil
}

// StoreRevision is the store's live revision as this replica last read it; it differs from
// Revision while the live set does not compile here.
func (s *Server) StoreRevision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeRev
}

// seed commits SeedDir as the first revision of an empty store. Two replicas starting together
// both try; the second finds the store taken (a conflict) and serves what the first stored.
func (s *Server) seed(ctx context.Context) error {
	rev, _, err := s.store.Live(ctx)
	if err != nil || rev.Number > 0 {
		return err
	}
	files, err := compiler.ReadDir(s.opts.SeedDir)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	bs, diags, err := s.build(files)
	if err != nil {
		return fmt.Errorf("seed %s: %w", s.opts.SeedDir, refusal(diags, err))
	}
	meta := specstore.Meta{Reason: "seeded from " + s.opts.SeedDir, Summary: summarize(compiler.Diff(ir.Gateway{}, bs.gw))}
	var conflict *specstore.ConflictError
	if _, err := s.store.Commit(ctx, files, meta, 0); err != nil && !errors.As(err, &conflict) {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// Version is the live snapshot's version ("" before the first good compile).
func (s *Server) Version() string {
	if st := s.current.Load(); st != nil {
		return st.version
	}
	return ""
}

// Revision is the store revision being served (0 before the first good one).
func (s *Server) Revision() int64 {
	if st := s.current.Load(); st != nil {
		return st.revision.Number
	}
	return 0
}

// Run serves ADS, the push API and the spec watcher until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	grpcLis, err := net.Listen("tcp", s.opts.GRPCAddr)
	if err != nil {
		return fmt.Errorf("xds: listen %s: %w", s.opts.GRPCAddr, err)
	}
	httpLis, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("xds: listen %s: %w", s.opts.HTTPAddr, err)
	}
	return s.Serve(ctx, grpcLis, httpLis)
}

// Serve is Run on listeners the caller opened (tests use 127.0.0.1:0).
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xdsSrv := server.NewServer(ctx, s.cache, s.callbacks())
	gs := grpcserver.New(1000) // Envoys hold one ADS stream each, for hours
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xdsSrv)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xdsSrv)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xdsSrv)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xdsSrv)
	rlsconfigservice.RegisterRateLimitConfigDiscoveryServiceServer(gs, xdsSrv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)

	s.log.Info("control plane serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "version", s.Version(), "revision", s.Revision())
	return grpcserver.Serve(ctx, gs, hs, grpcLis, adminhttp.Server(s.handler()), httpLis, 5*time.Second, s.watch)
}

// Reload reads the store's live set and serves it if it is good. The store is the source of
// truth: a change set is committed there first, and every replica serves what it holds.
func (s *Server) Reload(source string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return s.reloadLocked(ctx, source)
}

// storeTimeout bounds a reload's calls to the store (the API server): a change waits for the
// mutex a reload holds.
const storeTimeout = time.Minute

// editRecorder is a store whose live files can be edited in place (a directory): an edit is
// recorded as a revision without rewriting the files.
type editRecorder interface {
	RecordEdit(ctx context.Context, files map[string][]byte, meta specstore.Meta, expect int64) (specstore.Revision, error)
}

func (s *Server) reloadLocked(ctx context.Context, source string) (string, error) {
	rev, files, err := s.store.Live(ctx)
	if err != nil {
		s.metrics.rebuilds.WithLabelValues(source, "refused").Inc()
		return "", err
	}
	s.storeRev = rev.Number
	if rev.Number == 0 && len(files) == 0 {
		s.metrics.rebuilds.WithLabelValues(source, "refused").Inc()
		return "", errEmptyStore
	}
	digest := specstore.FilesDigest(files)
	cur := s.current.Load()
	if cur != nil && cur.revision.Number == rev.Number && cur.digest == digest {
		s.metrics.rebuilds.WithLabelValues(source, "unchanged").Inc()
		return cur.version, nil
	}
	st, diags, err := s.build(files)
	if err != nil {
		s.metrics.rebuilds.WithLabelValues(source, "refused").Inc()
		return "", refusal(diags, err)
	}
	st.revision, st.digest = rev, digest
	if rec, ok := s.store.(editRecorder); ok && digest != rev.Digest && len(files) > 0 {
		// The files were edited in place: record them as a revision, so that history,
		// rollback and --if-version see the change.
		old := ir.Gateway{}
		if cur != nil {
			old = cur.gw
		}
		reason := "spec files edited in place"
		if rev.Number == 0 {
			reason = "the spec directory's files, first recorded"
		}
		meta := specstore.Meta{Reason: reason, Author: source, Summary: summarize(compiler.Diff(old, st.gw))}
		if r, err := rec.RecordEdit(ctx, files, meta, rev.Number); err != nil {
			s.log.Warn("the edited spec files are served but not recorded in the history", "err", err)
		} else {
			st.revision, s.storeRev = r, r.Number
		}
	}
	changed, err := s.serve(st)
	if err != nil {
		return "", err
	}
	result := "accepted"
	if !changed {
		result = "unchanged"
	}
	s.metrics.rebuilds.WithLabelValues(source, result).Inc()
	return st.version, nil
}

// serve makes st what this replica serves. Envoy gets a new snapshot only when the config
// changed; for the same config (a comment or formatting changed) the files and revision are
// remembered as they are now.
func (s *Server) serve(st *builtState) (changed bool, err error) {
	if cur := s.current.Load(); cur != nil && cur.version == st.version {
		s.current.Store(&st.state)
		s.metrics.revision.Set(float64(st.revision.Number))
		return false, nil
	}
	return true, s.publish(st)
}

// errEmptyStore is a store no set was committed to yet.
var errEmptyStore = errors.New("the spec store is empty: nothing to serve until a change set arrives (specgate push --sync DIR)")

// build compiles a set of files into a candidate state and its snapshot, checking everything
// that can be checked before anything is served.
func (s *Server) build(files map[string][]byte) (*builtState, compiler.Diagnostics, error) {
	start := time.Now()
	defer func() { s.metrics.buildSeconds.Observe(time.Since(start).Seconds()) }()
	out, diags, err := compiler.CompileEnvoy(s.opts.SpecDir, files, compiler.Options{Loader: s.loader, Gateway: &s.opts.Gateway,
		Policy: compiler.PolicyOf(s.opts.Gateway)},
		translate.Options{ListenAddress: s.opts.ListenAddress, Cache: s.routes})
	if err != nil {
		return nil, diags, err
	}
	gw, version := out.Model, out.Version
	snap, err := snapshot(version, out.Resources)
	if err != nil {
		return nil, diags, err
	}
	if s.opts.EnvoyBin != "" {
		if err := s.envoyValidate(gw); err != nil {
			return nil, diags, err
		}
	}
	return &builtState{state: state{version: version, files: files, gw: gw}, snap: snap}, diags, nil
}

type builtState struct {
	state
	snap *cache.Snapshot
}

func snapshot(version string, res *translate.Resources) (*cache.Snapshot, error) {
	m := map[resource.Type][]types.Resource{}
	for _, l := range res.Listeners {
		m[resource.ListenerType] = append(m[resource.ListenerType], l)
	}
	for _, r := range res.Routes {
		m[resource.RouteType] = append(m[resource.RouteType], r)
	}
	for _, c := range res.Clusters {
		m[resource.ClusterType] = append(m[resource.ClusterType], c)
	}
	for _, sc := range res.Secrets {
		m[resource.SecretType] = append(m[resource.SecretType], sc)
	}
	m[resource.RateLimitConfigType] = []types.Resource{res.RateLimit}
	// specgate validate's descriptions; Envoy subscribes to no extension configs.
	for _, sc := range res.Schemas {
		m[resource.ExtensionConfigType] = append(m[resource.ExtensionConfigType], sc)
	}
	snap, err := cache.NewSnapshot(version, m)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("snapshot inconsistent: %w", err)
	}
	return snap, nil
}

// envoyValidate runs the real Envoy's validation on the candidate as a static bootstrap.
func (s *Server) envoyValidate(gw ir.Gateway) error {
	res, err := translate.Translate(gw, translate.Options{ListenAddress: s.opts.ListenAddress, InlineRoutes: true})
	if err != nil {
		return err
	}
	boot, err := translate.Bootstrap(res, translate.BootstrapOptions{})
	if err != nil {
		return err
	}
	y, err := translate.YAML(boot)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "specgate-validate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(p, y, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.opts.EnvoyBin, "--mode", "validate", "-c", p, "--log-level", "error").CombinedOutput()
	if err != nil {
		return fmt.Errorf("envoy rejects the config: %s", lastLines(string(out), 5))
	}
	return nil
}

// publish makes st the live snapshot.
func (s *Server) publish(st *builtState) error {
	if err := s.cache.SetSnapshot(context.Background(), fleet{}.ID(nil), st.snap); err != nil {
		return fmt.Errorf("set snapshot: %w", err)
	}
	s.current.Store(&st.state)
	s.metrics.setVersion(st.version, st.revision.Number)
	s.log.Info("snapshot live", "version", st.version, "revision", st.revision.Number, "services", len(st.gw.Services))
	return nil
}
