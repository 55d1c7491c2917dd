// Package adsclient follows one resource type of the control plane over ADS (state of the
// world) for specgate's own services: ratelimit's RateLimitConfigs, validate's descriptions.
package adsclient

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// Reconnect backoff.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
)

// MaxMessage bounds one response: every resource of the type at once (a large description
// weighs megabytes).
const MaxMessage = 256 << 20

// Follow hands apply every set of resources of typeURL served on conn until ctx ends: it ACKs
// each set apply accepts, NACKs one it refuses (the caller keeps what it had), and reconnects
// with jittered exponential backoff.
func Follow(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node, typeURL string, apply func([]*anypb.Any) error, log *slog.Logger) {
	backoff := backoffMin
	for {
		got, err := stream(ctx, conn, node, typeURL, apply, log)
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = backoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn("xds stream ended", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// stream runs one ADS stream; got reports whether a response arrived on it.
func stream(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node, typeURL string, apply func([]*anypb.Any) error, log *slog.Logger) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := sotw.NewADSClient(ctx, node, typeURL)
	if err := c.InitConnect(conn, grpc.MaxCallRecvMsgSize(MaxMessage)); err != nil {
		return false, err
	}
	for {
		resp, err := c.Fetch()
		if err != nil {
			return got, err
		}
		got = true
		if err := apply(resp.Resources); err != nil {
			log.Error("config refused (NACK)", "type", typeURL, "err", err)
			err = c.Nack(err.Error())
		} else {
			err = c.Ack()
		}
		if err != nil {
			return got, err
		}
	}
}
