// Package extauthz is the authorization service: Envoy's ext_authz Check over gRPC (JWT
// verification against each trusted issuer's JWKS, the route's scope policy, revocation),
// plus an admin HTTP server for metrics, probes and the revocation API (docs/architecture.md).
package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/grpcserver"
	"github.com/specgate/specgate/internal/tracing"
)

// Options configure Run.
type Options struct {
	Config   config.Gateway
	GRPCAddr string // default ":9001"
	HTTPAddr string // default ":9002"
	// GRPCListener and HTTPListener, when set, are used instead of the addresses (tests
	// and in-process end-to-end runs listen on 127.0.0.1:0 and read the port back).
	GRPCListener net.Listener
	HTTPListener net.Listener
	// AdminToken guards POST /v1/revocations; empty disables the endpoint.
	AdminToken string
	// DevKeyFile, when set, serves the public half of that key (created if missing) at
	// /.well-known/jwks.json for `make run` and `specgate token`.
	DevKeyFile string
	Logger     *slog.Logger
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := o.Config.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Listen before the first JWKS fetch: with --dev-key this process serves its own JWKS,
	// and a bound listener queues that fetch until Serve starts instead of refusing it.
	gl, err := listen(o.GRPCListener, o.GRPCAddr, ":9001")
	if err != nil {
		return err
	}
	hl, err := listen(o.HTTPListener, o.HTTPAddr, ":9002")
	if err != nil {
		gl.Close()
		return err
	}
	defer gl.Close()
	defer hl.Close()

	store, err := revocation.Open(o.Config.Revocation.Store, log)
	if err != nil {
		return err
	}
	defer store.Close()
	rc := o.Config.Revocation
	list := &revocation.List{
		Set:         revocation.NewSet(rc.ExpectedEntries, rc.FalsePositiveRate),
		Store:       store,
		MaxLifetime: rc.MaxTokenLifetime.Duration,
		Now:         time.Now,
	}
	tp, err := tracing.Start(ctx, o.Config.Tracing, "specgate-authz")
	if err != nil {
		return err
	}
	defer tp.Shutdown()
	srv, err := newServer(ctx, deps{cfg: o.Config, revoked: list.Set, log: log, tracer: tp.Tracer("specgate/extauthz")})
	if err != nil {
		return err
	}
	defer srv.close()
	go list.Run(ctx, time.Minute, log)

	var dev *devissuer.Key
	if o.DevKeyFile != "" {
		if dev, err = devissuer.LoadOrCreate(o.DevKeyFile); err != nil {
			return err
		}
		log.Info("serving the dev issuer's JWKS", "key", o.DevKeyFile, "kid", dev.KeyID())
	}
	if o.AdminToken == "" {
		log.Warn("SPECGATE_ADMIN_TOKEN is not set: the revocation API refuses every call")
	}

	gs := grpcserver.New(10_000, tp.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	a := &admin{srv: srv, list: list, token: o.AdminToken, dev: dev, log: log}
	hsrv := adminhttp.Server(a.routes())

	log.Info("authz serving", "grpc", gl.Addr().String(), "http", hl.Addr().String(),
		"issuers", len(o.Config.Issuers), "revocation_store", store.Durable())
	err = grpcserver.Serve(ctx, gs, hs, gl, hsrv, hl, 10*time.Second)
	cancel()
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	return nil
}

func listen(l net.Listener, addr, def string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	if addr == "" {
		addr = def
	}
	return net.Listen("tcp", addr)
}
