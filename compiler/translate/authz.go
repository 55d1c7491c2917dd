package translate

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

const filterExtAuthz = "envoy.filters.http.ext_authz"

// authzFilter calls specgate authz for every request that reaches an operation route. When
// the service cannot be asked, requests fail closed with 503 unless authz.failOpen is set.
func (t *translator) authzFilter() *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterAuthz}},
			Timeout:         durationpb.New(t.opts.Gateway.Authz.Timeout.Duration),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    t.opts.Gateway.Authz.FailOpen,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
}

// authzPerRoute hands the authz service the policy of exactly this route, in the same RDS
// update as the route itself, so the service keeps no per-route state.
func (t *translator) authzPerRoute(op *ir.Operation) *anypb.Any {
	pol := policy.Route{ID: op.ID, Anonymous: op.Security.Anonymous, Headers: op.AllowedHeaders}
	for _, r := range op.Security.AnyOf {
		pol.AnyOf = append(pol.AnyOf, policy.Requirement{Scopes: r.Scopes, Issuers: r.Issuers})
	}
	for _, rl := range op.RateLimits {
		if rl.Key == ir.KeyHeader {
			pol.RateLimitHeaders = appendUnique(pol.RateLimitHeaders, strings.ToLower(rl.Header))
		}
	}
	ext, err := pol.Encode()
	if err != nil {
		t.fail("route %s: %v", op.ID, err)
		return nil
	}
	return t.pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext},
	}})
}

// authzDisabled is for routes that answer from Envoy itself (404, 405): nothing to protect.
func (t *translator) authzDisabled() *anypb.Any {
	return t.pack(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
}
