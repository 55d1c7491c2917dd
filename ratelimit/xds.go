package ratelimit

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/xds/adsclient"
)

// subscribe follows the RateLimitConfig resources served over ADS on conn until ctx ends; a
// config it cannot build is NACKed and the live one stays.
func (s *Service) subscribe(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) {
	adsclient.Follow(ctx, conn, node, resource.RateLimitConfigType, func(res []*anypb.Any) error {
		cfgs, err := decode(res)
		if err != nil {
			return err
		}
		return s.SetConfig(cfgs)
	}, s.log)
}

func decode(res []*anypb.Any) ([]*rlsconf.RateLimitConfig, error) {
	cfgs := make([]*rlsconf.RateLimitConfig, 0, len(res))
	for _, a := range res {
		c := &rlsconf.RateLimitConfig{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, fmt.Errorf("resource %s: %w", a.GetTypeUrl(), err)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs, nil
}
