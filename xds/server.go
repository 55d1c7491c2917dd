// Package xds is specgate's control plane: it compiles the spec directory, serves the result to
// every Envoy (and the RateLimitConfig to every rate-limit replica) over ADS, and takes new
// specs from the directory watcher and the push API. Only a snapshot that compiled, translated,
// validated (and, with an Envoy binary, passed `envoy --mode validate`) is ever served.
package xds

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
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
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/grpcserver"
)

// Options configure the control plane.
type Options struct {
	SpecDir string
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
	// MaxSpecBytes bounds a pushed file (default 1 MiB).
	MaxSpecBytes int64
	Logger       *slog.Logger
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
	if o.MaxSpecBytes == 0 {
		o.MaxSpecBytes = 1 << 20
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

// state is one accepted version of the specs.
type state struct {
	version string
	files   map[string][]byte
	gw      ir.Gateway
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
	loader  *compiler.Loader // parsed files by content: a push re-reads only what changed
	routes  *translate.Cache // translated path groups: a push rebuilds only what changed
	mu      sync.Mutex       // serializes rebuilds, pushes and deletes
	current atomic.Pointer[state]
}

// New creates a control plane; Run serves it.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if info, err := os.Stat(opts.SpecDir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("spec directory %q: not a directory (%v)", opts.SpecDir, err)
	}
	if err := opts.Gateway.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(), loader: compiler.NewLoader(), routes: translate.NewCache()}
	s.cache = cache.NewSnapshotCache(true, fleet{}, slogAdapter{opts.Logger})
	if _, err := s.ReloadFromDisk("startup"); err != nil {
		s.log.Error("initial specs refused; serving nothing until a good version arrives", "err", err)
	}
	return s, nil
}

// Version is the live snapshot's version ("" before the first good compile).
func (s *Server) Version() string {
	if st := s.current.Load(); st != nil {
		return st.version
	}
	return ""
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

	s.log.Info("control plane serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "specs", s.opts.SpecDir, "version", s.Version())
	return grpcserver.Serve(ctx, gs, hs, grpcLis, adminhttp.Server(s.handler()), httpLis, 5*time.Second, s.watch)
}

// ReloadFromDisk compiles the spec directory and serves it if it is good. The directory is the
// source of truth: what was pushed was written there first.
func (s *Server) ReloadFromDisk(source string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := compiler.ReadDir(s.opts.SpecDir)
	if err != nil {
		s.metrics.rebuilds.WithLabelValues(source, "refused").Inc()
		return "", err
	}
	st, diags, err := s.build(files)
	if err != nil {
		s.metrics.rebuilds.WithLabelValues(source, "refused").Inc()
		return "", refusal(diags, err)
	}
	if cur := s.current.Load(); cur != nil && cur.version == st.version {
		// Same config (a comment or formatting changed): keep serving it, but remember the
		// files as they are now, so GET and the next push start from the disk's bytes.
		s.current.Store(&st.state)
		s.metrics.rebuilds.WithLabelValues(source, "unchanged").Inc()
		return st.version, nil
	}
	if err := s.publish(st); err != nil {
		return "", err
	}
	s.metrics.rebuilds.WithLabelValues(source, "accepted").Inc()
	return st.version, nil
}

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
	m[resource.RateLimitConfigType] = []types.Resource{res.RateLimit}
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
	s.metrics.setVersion(st.version)
	s.log.Info("snapshot live", "version", st.version, "services", len(st.gw.Services))
	return nil
}

// currentFiles is a copy of the live files, or what is on disk before the first good version.
func (s *Server) currentFiles() (map[string][]byte, error) {
	if st := s.current.Load(); st != nil {
		return maps.Clone(st.files), nil
	}
	return compiler.ReadDir(s.opts.SpecDir)
}
