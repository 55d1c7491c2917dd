package translate

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// BootstrapOptions place a static Envoy next to specgate's services.
type BootstrapOptions struct {
	NodeID        string // default "specgate"
	AdminAddress  string // default 127.0.0.1:9901
	AuthzAddress  string // default 127.0.0.1:9001; host:port[,host:port...] for replicas
	RateLimitAddr string // default 127.0.0.1:9003; likewise
}

func (o BootstrapOptions) withDefaults() BootstrapOptions {
	if o.NodeID == "" {
		o.NodeID = "specgate"
	}
	if o.AdminAddress == "" {
		o.AdminAddress = "127.0.0.1:9901"
	}
	if o.AuthzAddress == "" {
		o.AuthzAddress = "127.0.0.1:9001"
	}
	if o.RateLimitAddr == "" {
		o.RateLimitAddr = "127.0.0.1:9003"
	}
	return o
}

// Bootstrap is a complete static Envoy config: the listeners with their routes inline, the
// service clusters and the authz and ratelimit clusters. Envoy runs it with -c and no
// control plane. r must come from Translate with Options.InlineRoutes set.
func Bootstrap(r *Resources, o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	o = o.withDefaults()
	t := &translator{}
	admin, err := hostPort(o.AdminAddress)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: admin address: %w", err)
	}
	grpc, err := t.grpcClusters(map[string]string{ClusterAuthz: o.AuthzAddress, ClusterRateLimit: o.RateLimitAddr})
	if err != nil {
		return nil, err
	}
	clusters := append(append([]*clusterv3.Cluster{}, r.Clusters...), grpc...)
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: o.NodeID, Cluster: "specgate"},
		Admin: &bootstrapv3.Admin{Address: admin},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: append([]*listenerv3.Listener{}, r.Listeners...),
			Clusters:  clusters,
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

func hostPort(s string) (*corev3.Address, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", p, err)
	}
	return socketAddress(h, uint32(port)), nil
}

// ADSBootstrap is the Envoy bootstrap for a control plane at xdsAddr: listeners and clusters
// over ADS (delta xDS when delta is set), static clusters for the control plane, authz and
// ratelimit. envoy/bootstrap.yaml is this with the defaults.
func ADSBootstrap(o BootstrapOptions, xdsAddr string, delta bool) (*bootstrapv3.Bootstrap, error) {
	o = o.withDefaults()
	t := &translator{}
	admin, err := hostPort(o.AdminAddress)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: admin address: %w", err)
	}
	clusters, err := t.grpcClusters(map[string]string{ClusterXDS: xdsAddr, ClusterAuthz: o.AuthzAddress, ClusterRateLimit: o.RateLimitAddr})
	if err != nil {
		return nil, err
	}
	api := corev3.ApiConfigSource_GRPC
	if delta {
		api = corev3.ApiConfigSource_DELTA_GRPC
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: o.NodeID, Cluster: "specgate"},
		Admin: &bootstrapv3.Admin{Address: admin},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             api,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ClusterXDS},
				}}},
				SetNodeOnFirstMessageOnly: true,
			},
			CdsConfig: ads,
			LdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: clusters},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// grpcClusters builds the HTTP/2 clusters of specgate's gRPC peers, by name. An address may
// list several replicas separated by commas.
func (t *translator) grpcClusters(addrs map[string]string) ([]*clusterv3.Cluster, error) {
	var out []*clusterv3.Cluster
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		var endpoints []*corev3.Address
		for _, addr := range strings.Split(addrs[name], ",") {
			a, err := hostPort(strings.TrimSpace(addr))
			if err != nil {
				return nil, fmt.Errorf("bootstrap: %s address: %w", name, err)
			}
			endpoints = append(endpoints, a)
		}
		out = append(out, t.grpcCluster(name, endpoints))
	}
	return out, t.err
}
