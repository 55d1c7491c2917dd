package translate

import (
	"errors"
	"fmt"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	cgroupv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/cgroup_memory/v3"
	connectionsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/compiler/ir"
)

// BootstrapOptions place a static Envoy next to specgate's services.
type BootstrapOptions struct {
	NodeID       string // default "specgate"
	AdminAddress string // default 127.0.0.1:9901; a loopback HOST:PORT, or unix:/path
	// StatsAddress, when set, is a listener serving only GET /ready and /stats/prometheus
	// from the admin, for the kubelet's probes and Prometheus (stats.go).
	StatsAddress  string
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
	admin, err := adminAddress(o.AdminAddress)
	if err != nil {
		return nil, err
	}
	grpc, err := t.grpcClusters(map[string]string{ClusterAuthz: o.AuthzAddress, ClusterRateLimit: o.RateLimitAddr})
	if err != nil {
		return nil, err
	}
	static := &bootstrapv3.Bootstrap_StaticResources{
		Listeners: append([]*listenerv3.Listener{}, r.Listeners...),
		Clusters:  append(append([]*clusterv3.Cluster{}, r.Clusters...), grpc...),
		Secrets:   append([]*tlsv3.Secret{}, r.Secrets...),
	}
	if err := t.addStats(static, o.StatsAddress, admin); err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{
		Node:                   &corev3.Node{Id: o.NodeID, Cluster: "specgate"},
		Admin:                  &bootstrapv3.Admin{Address: admin},
		OverloadManager:        t.overloadManager(),
		LayeredRuntime:         runtimeLayers(),
		StaticResources:        static,
		TypedDnsResolverConfig: t.dnsResolver(),
	}
	if err := errors.Join(t.err, b.ValidateAll()); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// Overload protection, after Envoy's edge best practices. Memory pressure is the container's
// (the cgroup's limit, so no figure to keep in step with the pod spec; without a limit it
// stays 0): from 85 % Envoy resets the streams holding the most buffered data (a body being
// buffered counts once it reaches 1 MiB), at 90 % it returns memory to the OS, at 98 % it
// answers new requests 503. Connections are capped so that a flood cannot exhaust sockets.
const (
	monitorMemory      = "envoy.resource_monitors.cgroup_memory"
	monitorConnections = "envoy.resource_monitors.global_downstream_max_connections"
	maxConnections     = 50_000
)

// runtimeLayers raises RE2's program size limit (Envoy's default is 100) to fit the header
// rules of tokenless routes (ir.HeaderRule). An Envoy started from an older bootstrap refuses
// those routes: the push fails whole (NACK), nothing is half applied. The admin layer is the
// one Envoy has when no runtime is configured.
func runtimeLayers() *bootstrapv3.LayeredRuntime {
	static, _ := structpb.NewStruct(map[string]any{"re2.max_program_size.error_level": ir.MaxRegexProgram})
	return &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{
		{Name: "specgate", LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: static}},
		{Name: "admin", LayerSpecifier: &bootstrapv3.RuntimeLayer_AdminLayer_{AdminLayer: &bootstrapv3.RuntimeLayer_AdminLayer{}}},
	}}
}

func (t *translator) overloadManager() *overloadv3.OverloadManager {
	threshold := func(v float64) []*overloadv3.Trigger {
		return []*overloadv3.Trigger{{Name: monitorMemory, TriggerOneof: &overloadv3.Trigger_Threshold{Threshold: &overloadv3.ThresholdTrigger{Value: v}}}}
	}
	return &overloadv3.OverloadManager{
		RefreshInterval:     durationpb.New(250 * time.Millisecond),
		BufferFactoryConfig: &overloadv3.BufferFactoryConfig{MinimumAccountToTrackPowerOfTwo: 20},
		ResourceMonitors: []*overloadv3.ResourceMonitor{
			{Name: monitorMemory, ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: t.pack(&cgroupv3.CgroupMemoryConfig{})}},
			{Name: monitorConnections, ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: t.pack(
				&connectionsv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: maxConnections})}},
		},
		Actions: []*overloadv3.OverloadAction{
			{Name: "envoy.overload_actions.reset_high_memory_stream", Triggers: []*overloadv3.Trigger{{Name: monitorMemory,
				TriggerOneof: &overloadv3.Trigger_Scaled{Scaled: &overloadv3.ScaledTrigger{ScalingThreshold: 0.85, SaturationThreshold: 0.95}}}}},
			{Name: "envoy.overload_actions.shrink_heap", Triggers: threshold(0.90)},
			{Name: "envoy.overload_actions.stop_accepting_requests", Triggers: threshold(0.98)},
		},
	}
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

// dnsResolver is c-ares without the search list: a Kubernetes pod's resolv.conf (ndots 5)
// otherwise makes each lookup of a Service or backend name try every search domain first, and
// those NXDOMAIN answers were most of a cluster's DNS traffic. Names resolve as written: write
// them in full (orders.shop.svc.cluster.local).
func (t *translator) dnsResolver() *corev3.TypedExtensionConfig {
	return &corev3.TypedExtensionConfig{Name: "envoy.network.dns_resolver.cares", TypedConfig: t.pack(&caresv3.CaresDnsResolverConfig{
		DnsResolverOptions: &corev3.DnsResolverOptions{NoDefaultSearchDomain: true},
	})}
}

// ADSBootstrap is the Envoy bootstrap for a control plane at xdsAddr: listeners and clusters
// over ADS (delta xDS when delta is set), static clusters for the control plane, authz and
// ratelimit. envoy/bootstrap.yaml is this with the defaults.
func ADSBootstrap(o BootstrapOptions, xdsAddr string, delta bool) (*bootstrapv3.Bootstrap, error) {
	o = o.withDefaults()
	t := &translator{}
	admin, err := adminAddress(o.AdminAddress)
	if err != nil {
		return nil, err
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
		Node:                   &corev3.Node{Id: o.NodeID, Cluster: "specgate"},
		Admin:                  &bootstrapv3.Admin{Address: admin},
		OverloadManager:        t.overloadManager(),
		LayeredRuntime:         runtimeLayers(),
		TypedDnsResolverConfig: t.dnsResolver(),
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
	if err := t.addStats(b.StaticResources, o.StatsAddress, admin); err != nil {
		return nil, err
	}
	if err := errors.Join(t.err, b.ValidateAll()); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// addStats adds the stats listener and its admin cluster when addr is set.
func (t *translator) addStats(static *bootstrapv3.Bootstrap_StaticResources, addr string, admin *corev3.Address) error {
	if addr == "" {
		return nil
	}
	l, c, err := t.statsResources(addr, admin)
	if err != nil {
		return err
	}
	static.Listeners = append(static.Listeners, l)
	static.Clusters = append(static.Clusters, c)
	return nil
}

// grpcClusters builds the HTTP/2 clusters of specgate's gRPC peers, by name. An address may
// list several replicas separated by commas.
func (t *translator) grpcClusters(addrs map[string]string) ([]*clusterv3.Cluster, error) {
	var out []*clusterv3.Cluster
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		endpoints, err := addresses(addrs[name])
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %s address: %w", name, err)
		}
		out = append(out, t.grpcCluster(name, endpoints))
	}
	return out, t.err
}

// addresses parses host:port[,host:port...].
func addresses(list string) ([]*corev3.Address, error) {
	var out []*corev3.Address
	for _, addr := range strings.Split(list, ",") {
		a, err := hostPort(strings.TrimSpace(addr))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
