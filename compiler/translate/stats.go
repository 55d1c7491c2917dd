package translate

import (
	"fmt"
	"net/netip"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Envoy's admin answers anyone who reaches it, mutations included (/quitquitquit,
// /drain_listeners, /logging), so it binds loopback only: a spec author's backend cannot
// point at it (gateway.yaml backends) and a pod neighbour cannot reach it. What the kubelet
// and Prometheus need from it goes through a listener of its own that serves exactly those
// two paths.
const (
	// ListenerStats serves GET (and HEAD) /ready and /stats/prometheus from the admin, 404
	// to the rest.
	ListenerStats = "specgate_stats"
	clusterAdmin  = "specgate_admin"
)

// StatsPaths are the admin paths the stats listener forwards.
var StatsPaths = []string{"/ready", "/stats/prometheus"}

// adminAddress parses the admin address: a Unix socket ("unix:/path"), which nothing reaches
// over the network (deploy/: a spec whose backend name resolves to loopback at run time still
// finds no admin), or a loopback HOST:PORT, for a laptop and the tests.
func adminAddress(s string) (*corev3.Address, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("bootstrap: admin address %s: want unix:/absolute/path", s)
		}
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path, Mode: 0o600}}}, nil
	}
	a, err := hostPort(s)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: admin address: %w", err)
	}
	ip, err := netip.ParseAddr(a.GetSocketAddress().GetAddress())
	if err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("bootstrap: admin address %s: the admin must bind a loopback address (it takes mutations from anyone who reaches it); expose readiness and Prometheus stats with the stats address", s)
	}
	return a, nil
}

// statsResources are the stats listener on addr and the cluster to the admin.
func (t *translator) statsResources(addr string, admin *corev3.Address) (*listenerv3.Listener, *clusterv3.Cluster, error) {
	listen, err := hostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("bootstrap: stats address: %w", err)
	}
	var routes []*routev3.Route
	for _, p := range StatsPaths {
		for _, m := range []string{"GET", "HEAD"} {
			routes = append(routes, &routev3.Route{
				Match:  methodMatch(&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}, m),
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterAdmin}}},
			})
		}
	}
	routes = append(routes, &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
	})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: ListenerStats,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         ListenerStats,
			VirtualHosts: []*routev3.VirtualHost{{Name: ListenerStats, Domains: []string{"*"}, Routes: routes}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{t.httpFilter(FilterRouter, &routerv3.Router{})},
	}
	l := &listenerv3.Listener{
		Name:    ListenerStats,
		Address: listen,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(hcm)},
		}}}},
	}
	if pipe := admin.GetPipe(); pipe != nil {
		return l, staticCluster(clusterAdmin, admin), t.err
	}
	sa := admin.GetSocketAddress()
	return l, endpointCluster(clusterAdmin, sa.GetAddress(), sa.GetPortValue()), t.err
}

// staticCluster is a cluster of one fixed address (a Unix socket).
func staticCluster(name string, addr *corev3.Address) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(twoSeconds),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
			}}}},
		},
	}
}
