package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// Request validation (x-specgate validate: request) is Envoy's ext_proc filter calling
// specgate validate, in the chain only of listeners that serve such an operation, after the
// rate limits (an invalid request counts, and authz refuses a bad token before its body is
// read), and off by default: each such operation's routes turn it on and tell the processor
// where the operation is (policy.ValidateSchema and the others). The processor gets the
// descriptions themselves over ADS (Resources.Schemas), from the same snapshot as the routes.

// validateCluster is specgate validate's cluster (validation.address), which the resources
// carry only when an operation validates requests: an Envoy of a gateway without them does
// not look for the name every second.
func (t *translator) validateCluster() *clusterv3.Cluster {
	cs, err := t.grpcClusters(map[string]string{ClusterValidate: t.set.Validation.Address})
	if err != nil {
		t.fail("validation.address: %w", err)
		return nil
	}
	return cs[0]
}

// anyValidation reports whether an operation of the gateway validates requests.
func (t *translator) anyValidation() bool {
	for _, op := range t.ops {
		if op.Validation != nil {
			return true
		}
	}
	return false
}

// usesValidation reports whether listener l serves an operation that validates requests.
func (t *translator) usesValidation(l ir.Listener) bool {
	return t.anyOperation(l, func(op *ir.Operation) bool { return op.Validation != nil })
}

// validateFilter is the listener's ext_proc filter, off until a route turns it on. Its routes
// send the request headers and the body, buffered whole (within the body limit, which the
// buffer filter enforces first; a request without a body ends at its headers). Nothing of the
// response.
func (t *translator) validateFilter() *hcmv3.HttpFilter {
	v := t.set.Validation
	f := t.httpFilter(FilterExtProc, &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterValidate}},
		},
		FailureModeAllow: v.FailOpen,
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     extprocv3.ProcessingMode_BUFFERED,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SKIP,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		MessageTimeout: durationpb.New(v.Timeout.Duration),
		StatusOnError:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		// The processor only answers or lets the request through: no route changes.
		DisableClearRouteCache: true,
		// Its result, for the access log and traces.
		MetadataOptions: &extprocv3.MetadataOptions{ReceivingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{
			Untyped: []string{policy.ValidateNamespace}}},
		StatPrefix: "specgate_validate",
	})
	f.Disabled = true
	return f
}

// validatePerRoute turns the filter on for operation op (its route or its tokenless route)
// and names the operation to the processor.
func (t *translator) validatePerRoute(op *ir.Operation) *anypb.Any {
	v := op.Validation
	md := func(k, val string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, Value: val} }
	meta := []*corev3.HeaderValue{
		md(policy.ValidateSchema, v.Schema),
		md(policy.ValidatePath, v.Path),
		md(policy.ValidateTemplate, op.Path),
		md(policy.ValidateRoute, op.ID),
	}
	return t.pack(&routev3.FilterConfig{Config: t.pack(&extprocv3.ExtProcPerRoute{
		Override: &extprocv3.ExtProcPerRoute_Overrides{Overrides: &extprocv3.ExtProcOverrides{
			GrpcInitialMetadata: meta,
		}},
	})})
}

// schemas are the descriptions of the services whose operations validate requests, for
// specgate validate over ADS: one extension config each, named by its hash and holding the
// JSON document.
func schemas(gw ir.Gateway) []*corev3.TypedExtensionConfig {
	var out []*corev3.TypedExtensionConfig
	for _, s := range gw.Services {
		if s.Schema == nil {
			continue
		}
		doc, _ := anypb.New(wrapperspb.Bytes(s.Schema.Doc))
		out = append(out, &corev3.TypedExtensionConfig{Name: s.Schema.Hash, TypedConfig: doc})
	}
	return out
}
