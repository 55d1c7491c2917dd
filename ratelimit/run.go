package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/grpcserver"
	"github.com/specgate/specgate/internal/redisurl"
	"github.com/specgate/specgate/internal/tracing"
	"github.com/specgate/specgate/ratelimit/limiter"
	"github.com/specgate/specgate/ratelimit/rules"
)

// Options configure the service. At most one of XDSAddr and LimitsFile is set; with
// neither, the caller hands configs to Server.Service().SetConfig.
type Options struct {
	Config     config.Gateway
	GRPCAddr   string // default ":9003"
	HTTPAddr   string // default ":9004"
	XDSAddr    string // control plane, host:port
	LimitsFile string // a RateLimitConfig in protojson form (YAML or JSON); reloaded on SIGHUP
	NodeID     string // default "specgate-ratelimit-<hostname>"
	Logger     *slog.Logger
	// Clock is for tests (default: the wall clock).
	Clock limiter.TimeSource
}

// Server is a running service with its gRPC and HTTP listeners.
type Server struct {
	*grpcserver.Running
	svc *Service
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Start listens, loads the first config source and serves in the background until ctx ends.
// A bad limits file is an error here; a control plane that is not up yet is not.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.XDSAddr != "" && o.LimitsFile != "" {
		return nil, errors.New("ratelimit: set one of the xDS address and the limits file, not both")
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = ":9003"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":9004"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := New(o)
	if err != nil {
		return nil, err
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	svc.onReady = func() {
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	if o.LimitsFile != "" {
		if err := svc.loadFile(o.LimitsFile); err != nil {
			svc.Close()
			return nil, err
		}
	}
	var conn *grpc.ClientConn
	if o.XDSAddr != "" {
		if conn, err = grpc.NewClient(o.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			svc.Close()
			return nil, fmt.Errorf("ratelimit: xds %s: %w", o.XDSAddr, err)
		}
	}
	grpcLn, httpLn, err := grpcserver.Listen(ctx, o.GRPCAddr, o.HTTPAddr)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		svc.Close()
		return nil, fmt.Errorf("ratelimit: %w", err)
	}

	tp, err := tracing.Start(ctx, o.Config.Tracing, "specgate-ratelimit")
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		svc.Close()
		return nil, err
	}
	svc.tracer = tp.Tracer("specgate/ratelimit")
	gs := grpcserver.New(10_000, tp.ServerOptions()...)
	rlsv3.RegisterRateLimitServiceServer(gs, svc)
	healthpb.RegisterHealthServer(gs, hs)
	hsrv := adminhttp.Server(svc.httpHandler())

	s := &Server{Running: grpcserver.NewRunning(grpcLn, httpLn), svc: svc}
	var background []func(context.Context) error // each returns when its context ends
	if conn != nil {
		node := &corev3.Node{Id: grpcserver.NodeID("ratelimit", o.NodeID), Cluster: "specgate-ratelimit"}
		background = append(background, func(ctx context.Context) error { svc.subscribe(ctx, conn, node); return ctx.Err() })
	}
	if o.LimitsFile != "" {
		background = append(background, func(ctx context.Context) error { svc.reloadOnHUP(ctx, o.LimitsFile); return ctx.Err() })
	}
	o.Logger.Info("ratelimit serving", "grpc", grpcLn.Addr().String(), "http", httpLn.Addr().String(),
		"store", redisurl.Redacted(o.Config.RateLimit.Store), "xds", o.XDSAddr, "limits", o.LimitsFile)
	go func() {
		s.Fail(grpcserver.Serve(ctx, gs, hs, grpcLn, hsrv, httpLn, 5*time.Second, background...))
		tp.Shutdown() // what is buffered goes out before the process ends
		if conn != nil {
			conn.Close()
		}
		s.Fail(svc.Close())
		s.Stopped()
	}()
	return s, nil
}

// Service is the running service.
func (s *Server) Service() *Service { return s.svc }

func (s *Service) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	adminhttp.Probes(mux, func() (map[string]string, error) {
		if !s.Ready() {
			return nil, errors.New("no rate-limit config yet")
		}
		return nil, nil
	})
	return mux
}

func (s *Service) loadFile(path string) error {
	c, err := rules.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ratelimit: limits: %w", err)
	}
	if err := s.SetConfig([]*rlsconf.RateLimitConfig{c}); err != nil {
		return fmt.Errorf("ratelimit: limits %s: %w", path, err)
	}
	return nil
}

// reloadOnHUP reloads the limits file on SIGHUP; a bad file leaves the live config.
func (s *Service) reloadOnHUP(ctx context.Context, path string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := s.loadFile(path); err != nil {
				s.log.Error("limits reload failed; the live config stays", "err", err)
			}
		}
	}
}
