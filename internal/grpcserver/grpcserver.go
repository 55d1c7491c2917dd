// Package grpcserver builds the gRPC servers of the roles (the control plane's ADS, authz's
// Check, ratelimit's ShouldRateLimit) with the settings they share, and runs and stops each
// role's servers the same way.
package grpcserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"
)

// New is a gRPC server for Envoy's long-lived HTTP/2 connections: keepalive pings every 30 s
// detect a dead peer behind a load balancer, idle clients may ping every 10 s, and maxStreams
// bounds what one connection may hold open (Envoy multiplexes every worker's calls on a few).
func New(maxStreams uint32, opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(maxStreams),
	}, opts...)...)
}

// Serve runs a role's gRPC server on grpcLis and its HTTP server (probes, metrics, admin) on
// httpLis, with background work beside them, until ctx ends or one of them fails. Then it
// stops them in the order that drains traffic: health NOT_SERVING, so that Envoy stops picking
// this replica; the gRPC server gracefully for at most grace, then at once (long-lived streams
// such as ADS never end by themselves); the HTTP server; the background work (its context
// ends). It returns the first failure, nil after a clean stop.
func Serve(ctx context.Context, gs *grpc.Server, hs *health.Server, grpcLis net.Listener, hsrv *http.Server, httpLis net.Listener,
	grace time.Duration, background ...func(context.Context) error) error {
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	errc := make(chan error, 2+len(background))
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- hsrv.Serve(httpLis) }()
	var wg sync.WaitGroup
	for _, f := range background {
		wg.Go(func() { errc <- f(bg) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		gs.Stop()
	}
	shCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if herr := hsrv.Shutdown(shCtx); err == nil {
		err = herr
	}
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
