// Package grpcserver builds the gRPC servers of the roles (the control plane's ADS, authz's
// Check, ratelimit's ShouldRateLimit) with the settings they share.
package grpcserver

import (
	"time"

	"google.golang.org/grpc"
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
