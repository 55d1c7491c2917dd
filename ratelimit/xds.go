package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
)

// Reconnect backoff of the xDS subscription.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
)

// subscribe follows the RateLimitConfig resources served over ADS (state of the world) on
// conn until ctx ends: it ACKs each config it applies, NACKs one it cannot build (the live
// config stays), and reconnects with jittered exponential backoff.
func (s *Service) subscribe(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) {
	backoff := backoffMin
	for {
		got, err := s.stream(ctx, conn, node)
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = backoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("xds stream ended", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// stream runs one ADS stream; got reports whether a response arrived on it.
func (s *Service) stream(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := sotw.NewADSClient(ctx, node, resource.RateLimitConfigType)
	if err := c.InitConnect(conn); err != nil {
		return false, err
	}
	for {
		resp, err := c.Fetch()
		if err != nil {
			return got, err
		}
		got = true
		cfgs, err := decode(resp)
		if err == nil {
			err = s.SetConfig(cfgs)
		}
		if err != nil {
			s.log.Error("rate-limit config refused (NACK)", "err", err)
			err = c.Nack(err.Error())
		} else {
			err = c.Ack()
		}
		if err != nil {
			return got, err
		}
	}
}

func decode(resp *sotw.Response) ([]*rlsconf.RateLimitConfig, error) {
	cfgs := make([]*rlsconf.RateLimitConfig, 0, len(resp.Resources))
	for _, a := range resp.Resources {
		c := &rlsconf.RateLimitConfig{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, fmt.Errorf("resource %s: %w", a.GetTypeUrl(), err)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs, nil
}
