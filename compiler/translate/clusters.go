package translate

import (
	"cmp"
	"net"
	"path"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
)

// systemCAs is where Debian, Ubuntu (the official Envoy image) and distroless keep the CAs.
const systemCAs = "/etc/ssl/certs/ca-certificates.crt"

// serviceCluster is one service's backend: a static address for an IP, DNS otherwise (a
// Kubernetes Service name), TLS with SNI for https backends, verified with the system CAs or
// the CA of its backend TLS profile, which may also give a client certificate; and the
// secrets of that profile, which the cluster names through SDS.
func (t *translator) serviceCluster(s ir.Service) (*clusterv3.Cluster, []*tlsv3.Secret) {
	c := endpointCluster(s.Name, s.Backend.Host, s.Backend.Port)
	var secrets []*tlsv3.Secret
	if b := s.Backend; b.TLS {
		// A trusted chain is not enough: the certificate must name the backend.
		verify := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{sanMatcher(cmp.Or(b.SAN, b.Host))}}
		common := &tlsv3.CommonTlsContext{}
		profile, ok := t.set.BackendTLS[b.TLSProfile]
		if ok && profile.CA != "" {
			sds, sc := t.backendSecret(b.TLSProfile, "ca", &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:        &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: profile.CA}},
				WatchedDirectory: &corev3.WatchedDirectory{Path: path.Dir(profile.CA)},
			}}})
			secrets = append(secrets, sc)
			common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         verify,
				ValidationContextSdsSecretConfig: sds,
			}}
		} else {
			verify.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: systemCAs}}
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: verify}
		}
		if ok && profile.Certificate != "" {
			sds, sc := t.backendSecret(b.TLSProfile, "cert", &tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: profile.Certificate}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: profile.Key}},
				WatchedDirectory: &corev3.WatchedDirectory{Path: path.Dir(profile.Certificate)},
			}}})
			secrets = append(secrets, sc)
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sds}
		}
		c.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: t.pack(&tlsv3.UpstreamTlsContext{Sni: b.Host, CommonTlsContext: common})},
		}
	}
	t.protect(c, s)
	return c, secrets
}

// backendSecret names secret as the secret kind ("ca" or "cert") of backend TLS profile
// profile, and returns the cluster's reference to it. Its files are read and watched as the
// HTTPS listener's certificate is (tls.go).
func (t *translator) backendSecret(profile, kind string, secret *tlsv3.Secret) (*tlsv3.SdsSecretConfig, *tlsv3.Secret) {
	secret.Name = "backend_tls_" + profile + "_" + kind
	return t.sdsConfig(secret.Name), secret
}

// protect sets the service's circuit breaker and outlier detection, and a retry budget when
// one of its operations retries: retries never exceed that share of the requests in flight,
// so a failing backend is not hit by a retry storm.
func (t *translator) protect(c *clusterv3.Cluster, s ir.Service) {
	retries := slices.ContainsFunc(s.Operations, func(op ir.Operation) bool { return op.Retries != nil })
	if cb := s.CircuitBreaker; cb != nil || retries {
		th := &clusterv3.CircuitBreakers_Thresholds{}
		if cb == nil {
			cb = &ir.CircuitBreaker{}
		}
		for _, f := range []struct {
			v    uint32
			into **wrapperspb.UInt32Value
		}{{cb.MaxConnections, &th.MaxConnections}, {cb.MaxPendingRequests, &th.MaxPendingRequests}, {cb.MaxRequests, &th.MaxRequests}} {
			if f.v > 0 {
				*f.into = wrapperspb.UInt32(f.v)
			}
		}
		if retries {
			th.RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
				BudgetPercent:       &typev3.Percent{Value: cmp.Or(cb.RetryBudgetPercent, ir.DefaultRetryBudgetPercent)},
				MinRetryConcurrency: wrapperspb.UInt32(3),
			}
		}
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	}
	if od := s.OutlierDetection; od != nil {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(od.Consecutive5xx),
			Interval:           durationpb.New(od.Interval),
			BaseEjectionTime:   durationpb.New(od.BaseEjectionTime),
			MaxEjectionPercent: wrapperspb.UInt32(od.MaxEjectionPercent),
		}
	}
}

func sanMatcher(host string) *tlsv3.SubjectAltNameMatcher {
	kind := tlsv3.SubjectAltNameMatcher_DNS
	if isIP(host) {
		kind = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	return &tlsv3.SubjectAltNameMatcher{
		SanType: kind,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
	}
}

// grpcCluster is an HTTP/2 cluster for one of specgate's gRPC services.
// More endpoints (replicas) are balanced round robin.
func (t *translator) grpcCluster(name string, endpoints []*corev3.Address) *clusterv3.Cluster {
	c := addressCluster(name, endpoints)
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": t.pack(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		}),
	}
	return c
}

// addressCluster is a cluster of one or more host:port endpoints of a specgate role.
func addressCluster(name string, endpoints []*corev3.Address) *clusterv3.Cluster {
	sa := endpoints[0].GetSocketAddress()
	c := endpointCluster(name, sa.Address, sa.GetPortValue())
	if c.GetType() == clusterv3.Cluster_STRICT_DNS {
		// A headless Service's name answers the ready pods: a replica that starts or stops
		// (a rollout) is seen within a second, not Envoy's default 5 s.
		c.DnsRefreshRate = durationpb.New(time.Second)
	}
	for _, e := range endpoints[1:] {
		lb := c.LoadAssignment.Endpoints[0]
		lb.LbEndpoints = append(lb.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: e}},
		})
	}
	return c
}

func endpointCluster(name, host string, port uint32) *clusterv3.Cluster {
	kind := clusterv3.Cluster_STRICT_DNS
	if isIP(host) {
		kind = clusterv3.Cluster_STATIC
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(twoSeconds),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: kind},
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(host, port),
				}},
			}}}},
		},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func isIP(host string) bool { return net.ParseIP(host) != nil }
