package translate

import (
	"path"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/specgate/specgate/compiler/ir"
)

// tlsListener is plain's twin on l.TLS.Port: the same connection manager and route table
// (one RDS subscription for both), behind TLS. Its certificate comes through SDS as a secret
// that names files, not key material: Envoy reads them, watches their directory and serves a
// new pair from the next handshake on. A Kubernetes Secret volume swaps its files together
// (the ..data symlink), which is the change the watch sees. In a static bootstrap the secret
// is a static one, read at start.
func (t *translator) tlsListener(plain *listenerv3.Listener, l ir.Listener) (*listenerv3.Listener, *tlsv3.Secret) {
	name := l.Name + "_tls"
	secret := &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.Certificate}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: l.TLS.Key}},
			WatchedDirectory: &corev3.WatchedDirectory{Path: path.Dir(l.TLS.Certificate)},
		}},
	}
	sds := t.sdsConfig(name)
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds},
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}}
	tl := proto.Clone(plain).(*listenerv3.Listener)
	tl.Name = name
	tl.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: l.TLS.Port}
	tl.FilterChains[0].TransportSocket = &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: t.pack(ctx)},
	}
	return tl, secret
}

// sdsConfig refers to the secret name: served over ADS with the rest, or, in a static
// bootstrap, one of its static secrets.
func (t *translator) sdsConfig(name string) *tlsv3.SdsSecretConfig {
	sds := &tlsv3.SdsSecretConfig{Name: name}
	if !t.opts.InlineRoutes {
		sds.SdsConfig = &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	}
	return sds
}
