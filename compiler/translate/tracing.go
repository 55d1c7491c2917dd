package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/policy"
)

// ClusterOTLP is the OTLP/gRPC receiver Envoy exports its spans to (gateway.yaml tracing.otlp).
const ClusterOTLP = "specgate_otlp"

// ServiceEnvoy is the service name of Envoy's spans; authz and ratelimit name their own.
const ServiceEnvoy = "specgate-envoy"

// tracing is the HCM's tracing when tracing.otlp is set: Envoy's OpenTelemetry tracer continues
// a client's W3C traceparent (and its sampling decision) or starts a trace for
// tracing.sampling of the requests, and passes it on in traceparent: to the backend (from the
// upstream span) and to authz and ratelimit (each gRPC call is a child span). The ingress span
// is named after the route id and carries authz's decision and reason, from its dynamic
// metadata; request headers are never recorded, so no token reaches a span.
func (t *translator) tracing() *hcmv3.HttpConnectionManager_Tracing {
	tr := t.set.Tracing
	if tr.OTLP == "" {
		return nil
	}
	value := func(tag, format string) *tracingv3.CustomTag {
		return &tracingv3.CustomTag{Tag: tag, Type: &tracingv3.CustomTag_Value{Value: format}}
	}
	authz := func(key string) string { return "%DYNAMIC_METADATA(" + policy.MetadataNamespace + ":" + key + ")%" }
	tags := []*tracingv3.CustomTag{
		value("specgate.route", "%ROUTE_NAME%"),
		value("specgate.authz.decision", authz(policy.MetaDecision)),
		value("specgate.authz.reason", authz(policy.MetaReason)),
		value("specgate.authz.tokenless", "%METADATA(ROUTE:"+metaTokenless+":tokenless)%"),
	}
	if t.anyValidation() {
		tags = append(tags, value("specgate.validation.result", "%DYNAMIC_METADATA("+policy.ValidateNamespace+":"+policy.MetaResult+")%"))
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: 100 * tr.SampleRate()},
		Provider: &tracev3.Tracing_Http{
			Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: t.pack(&tracev3.OpenTelemetryConfig{
				GrpcService: &corev3.GrpcService{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterOTLP}},
					Timeout:         durationpb.New(time.Second),
				},
				ServiceName: ServiceEnvoy,
			})},
		},
		SpawnUpstreamSpan: wrapperspb.Bool(true), // a gateway is a hop of its own
		Operation:         "%ROUTE_NAME%",
		CustomTags:        tags,
	}
}

// otlpCluster is the HTTP/2 cluster of the OTLP receiver (tracing.otlp).
func (t *translator) otlpCluster() *clusterv3.Cluster {
	a, err := hostPort(t.set.Tracing.OTLP)
	if err != nil {
		t.fail("tracing.otlp: %w", err)
		return nil
	}
	return t.grpcCluster(ClusterOTLP, []*corev3.Address{a})
}
