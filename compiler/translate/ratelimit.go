package translate

import (
	"maps"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	rlconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// rateLimitFilter asks specgate ratelimit about every route that has rate_limits. A missing
// or slow rate-limit service lets traffic through (failure_mode_deny false): quotas protect
// backends, they must not take the gateway down with them.
func (t *translator) rateLimitFilter() *ratelimitv3.RateLimit {
	return &ratelimitv3.RateLimit{
		Domain:  policy.Domain,
		Timeout: durationpb.New(t.opts.RateLimitTimeout),
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterRateLimit},
			}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		EnableXRatelimitHeaders: ratelimitv3.RateLimit_DRAFT_VERSION_03,
		EnableRetryAfterHeader:  true,
	}
}

// rateLimitActions gives each quota of op one descriptor: route=<id>, limit=<i> and, for
// client/ip/header keys, the value counted (header+client: the client, then the header).
// client reads the client: from authz's dynamic metadata, which already holds the ip
// fall-backs (policy.MetaClient), or on a tokenless route from headerTokenlessClient. Header
// values come from authz's metadata.
func rateLimitActions(op *ir.Operation, client *routev3.RateLimit_Action) []*routev3.RateLimit {
	var out []*routev3.RateLimit
	for i, rl := range op.RateLimits {
		actions := []*routev3.RateLimit_Action{
			genericKey(policy.DescRoute, op.ID),
			genericKey(policy.DescLimit, strconv.Itoa(i)),
		}
		if rl.Plans != nil {
			plan := authzMetadata(policy.DescPlan, policy.MetaPlan)
			plan.GetMetadata().DefaultValue = ir.NoPlan // no plan (an anonymous request): the default
			actions = append(actions, plan)
		}
		switch rl.Key {
		case ir.KeyClient:
			actions = append(actions, client)
		case ir.KeyHeader:
			actions = append(actions, authzMetadata(policy.DescHeader, policy.MetaHeader(rl.Header)))
		case ir.KeyHeaderClient:
			actions = append(actions, client, authzMetadata(policy.DescHeader, policy.MetaHeader(rl.Header)))
		case ir.KeyIP:
			actions = append(actions, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{
				RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{},
			}})
		}
		out = append(out, &routev3.RateLimit{Actions: actions})
	}
	return out
}

func genericKey(key, value string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
		GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: key, DescriptorValue: value},
	}}
}

func authzMetadata(descriptorKey, metaKey string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Metadata{
		Metadata: &routev3.RateLimit_Action_MetaData{
			DescriptorKey: descriptorKey,
			MetadataKey: &metadatav3.MetadataKey{
				Key:  policy.MetadataNamespace,
				Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: metaKey}}},
			},
			Source: routev3.RateLimit_Action_MetaData_DYNAMIC,
		},
	}}
}

// rateLimitConfig is the limits the rate-limit service enforces, in the descriptor tree of
// envoyproxy/ratelimit: route → limit → key kind (a leaf without value: a bucket per value).
func rateLimitConfig(gw ir.Gateway) *rlconfv3.RateLimitConfig {
	cfg := &rlconfv3.RateLimitConfig{Name: policy.Domain, Domain: policy.Domain}
	for _, s := range gw.Services {
		for _, op := range s.Operations {
			if len(op.RateLimits) == 0 {
				continue
			}
			d := &rlconfv3.RateLimitDescriptor{Key: policy.DescRoute, Value: op.ID}
			for i, rl := range op.RateLimits {
				ld := &rlconfv3.RateLimitDescriptor{Key: policy.DescLimit, Value: strconv.Itoa(i)}
				if p := rl.Plans; p != nil {
					// A level per plan, and one without value for every other plan and for
					// requests without one (ir.NoPlan): the exact value wins.
					for _, name := range slices.Sorted(maps.Keys(p.Limits)) {
						pd := &rlconfv3.RateLimitDescriptor{Key: policy.DescPlan, Value: name}
						countBy(pd, rl.Key, &rlconfv3.RateLimitPolicy{Unit: unit(rl.Per), RequestsPerUnit: p.Limits[name]})
						ld.Descriptors = append(ld.Descriptors, pd)
					}
					pd := &rlconfv3.RateLimitDescriptor{Key: policy.DescPlan}
					countBy(pd, rl.Key, &rlconfv3.RateLimitPolicy{Unit: unit(rl.Per), RequestsPerUnit: p.Default})
					ld.Descriptors = append(ld.Descriptors, pd)
				} else {
					countBy(ld, rl.Key, &rlconfv3.RateLimitPolicy{Unit: unit(rl.Per), RequestsPerUnit: rl.Requests})
				}
				d.Descriptors = append(d.Descriptors, ld)
			}
			cfg.Descriptors = append(cfg.Descriptors, d)
		}
	}
	return cfg
}

// countBy puts limit under d, counted by key: at d itself (route), or in a level without
// value, a bucket per client, address or header value.
func countBy(d *rlconfv3.RateLimitDescriptor, key ir.KeyKind, limit *rlconfv3.RateLimitPolicy) {
	switch key {
	case ir.KeyRoute:
		d.RateLimit = limit
	case ir.KeyClient:
		d.Descriptors = []*rlconfv3.RateLimitDescriptor{{Key: policy.DescClient, RateLimit: limit}}
	case ir.KeyIP:
		d.Descriptors = []*rlconfv3.RateLimitDescriptor{{Key: policy.DescIP, RateLimit: limit}}
	case ir.KeyHeader:
		d.Descriptors = []*rlconfv3.RateLimitDescriptor{{Key: policy.DescHeader, RateLimit: limit}}
	case ir.KeyHeaderClient:
		d.Descriptors = []*rlconfv3.RateLimitDescriptor{{Key: policy.DescClient,
			Descriptors: []*rlconfv3.RateLimitDescriptor{{Key: policy.DescHeader, RateLimit: limit}}}}
	}
}

func unit(u ir.Unit) rlconfv3.RateLimitUnit {
	switch u {
	case ir.Second:
		return rlconfv3.RateLimitUnit_SECOND
	case ir.Minute:
		return rlconfv3.RateLimitUnit_MINUTE
	case ir.Hour:
		return rlconfv3.RateLimitUnit_HOUR
	default:
		return rlconfv3.RateLimitUnit_DAY
	}
}
