package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz"
	"github.com/specgate/specgate/ratelimit"
)

// The benchmark runs its peers as child processes of its own binary (-role), so that the
// load generator's work and garbage collection are not counted against them.

// runBackend is the tiny upstream every Envoy variant forwards to: 200 and a small JSON body.
func runBackend(ctx context.Context, addr string) error {
	body := []byte(`{"id":"42","status":"shipped"}`)
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
	}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// noopAuthz is the floor of an ext_authz Check over gRPC: it allows everything at once.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

// noopOTLP takes OTLP trace exports and drops them: the receiver of the tracing variants.
type noopOTLP struct {
	collectortrace.UnimplementedTraceServiceServer
}

func (noopOTLP) Export(context.Context, *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// runNoopAuthz serves noopAuthz and noopOTLP on grpcAddr and a readiness probe on httpAddr.
func runNoopAuthz(ctx context.Context, grpcAddr, httpAddr string) error {
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, noopAuthz{})
	collectortrace.RegisterTraceServiceServer(s, noopOTLP{})
	probe := &http.Server{Addr: httpAddr, ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go func() { _ = probe.ListenAndServe() }()
	go func() { <-ctx.Done(); s.Stop(); _ = probe.Close() }()
	return s.Serve(lis)
}

// runProfiled runs specgate authz or ratelimit in this process — the same Run as `specgate
// authz|ratelimit` — with net/http/pprof on pprofAddr, for -profile.
func runProfiled(ctx context.Context, role, cfgPath, limits, grpcAddr, httpAddr, pprofAddr string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Addr: pprofAddr, Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch role {
	case "authz-pprof":
		return extauthz.Run(ctx, extauthz.Options{Config: cfg, GRPCAddr: grpcAddr, HTTPAddr: httpAddr,
			AdminToken: os.Getenv("SPECGATE_ADMIN_TOKEN"), Logger: log})
	default:
		return ratelimit.Run(ctx, ratelimit.Options{Config: cfg, LimitsFile: limits, GRPCAddr: grpcAddr, HTTPAddr: httpAddr, Logger: log})
	}
}
