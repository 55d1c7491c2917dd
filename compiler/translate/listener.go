package translate

import (
	"net/http"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	celfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/policy"
)

// httpFilters: CORS answers preflights before anything else; with ipAllow, the RBAC filter
// of IP allow lists; the body limit comes next,
// because a filter that waits (ext_authz) receives the body whole, and the buffer filter
// measures only what it buffers itself; authz (with its decision cache or its plugin in front
// when on) decides before the rate limits count; request validation, where an operation asks for it,
// comes last.
func (t *translator) httpFilters(l ir.Listener, ipAllow bool) []*hcmv3.HttpFilter {
	fs := []*hcmv3.HttpFilter{t.httpFilter(FilterCORS, &corsv3.Cors{})}
	if ipAllow {
		fs = append(fs, t.ipAllowFilter())
	}
	fs = append(fs, t.httpFilter(FilterBuffer, &bufferv3.Buffer{MaxRequestBytes: wrapperspb.UInt32(t.set.MaxRequestBodyBytes)}))
	switch {
	case t.edgeCache():
		fs = append(fs, t.httpFilter(policy.CacheFilter, authzCacheFilter()))
		fs = append(fs, t.httpFilter(FilterExtAuthz, t.authzFilter()))
	case t.plugin():
		fs = append(fs, t.pluginFilter(), t.skipAfterPlugin(t.authzFilter()))
	default:
		fs = append(fs, t.httpFilter(FilterExtAuthz, t.authzFilter()))
	}
	fs = append(fs, t.headerFilters(l)...)
	fs = append(fs, t.httpFilter(FilterRateLimit, t.rateLimitFilter()))
	if t.usesValidation(l) {
		fs = append(fs, t.validateFilter())
	}
	return append(fs, t.httpFilter(FilterRouter, &routerv3.Router{}))
}

// listener serves one route table on one port with an edge-hardened HTTP connection manager.
func (t *translator) listener(l ir.Listener, rc *routev3.RouteConfiguration) *listenerv3.Listener {
	name := l.Name
	ipAllow := t.usesIPAllow(l) // the RBAC filter and its refusal's body
	hcmFilters := t.httpFilters(l, ipAllow)
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:  name,
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		HttpFilters: hcmFilters,
		// The client address is the peer's, or the last untrusted X-Forwarded-For hop behind
		// xffTrustedHops load balancers: the ip rate-limit key cannot be forged.
		UseRemoteAddress:  wrapperspb.Bool(true),
		XffNumTrustedHops: t.set.XFFTrustedHops,
		// Match on the path the backend will see: /a/../b and /a//b are not ways around a route.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout:                  durationpb.New(oneHour),
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
		// Envoy's edge best practices. The body limit buffers a request before authz sees it,
		// so what one client can make Envoy hold is bounded by streams per connection × the
		// body limit, for at most requestTimeout.
		Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
			MaxConcurrentStreams:        wrapperspb.UInt32(100),
			InitialStreamWindowSize:     wrapperspb.UInt32(64 << 10),
			InitialConnectionWindowSize: wrapperspb.UInt32(1 << 20),
		},
		MaxRequestHeadersKb:   wrapperspb.UInt32(60),
		RequestHeadersTimeout: durationpb.New(tenSeconds),
		RequestTimeout:        durationpb.New(requestTimeout),
		StreamIdleTimeout:     durationpb.New(5 * time.Minute),
		ServerName:            "specgate",
		StripMatchingHostPort: true,
		LocalReplyConfig:      t.localReplies(ipAllow, t.usesValidation(l)),
		UpgradeConfigs:        t.upgradeConfigs(l, hcmFilters),
		AccessLog:             t.accessLogs(),
		Tracing:               t.tracing(),
	}
	if t.opts.InlineRoutes {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	} else {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rc.Name,
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
		}}
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       t.opts.ListenAddress,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: l.Port},
		}}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(1 << 20),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(hcm)},
			}},
		}},
	}
}

// upgradeWebSocket is Envoy's name of the WebSocket upgrade.
const upgradeWebSocket = "websocket"

// upgradeConfigs lets the WebSocket operations of listener l (x-specgate websocket) upgrade:
// off for the listener, each such route turns it on, and an upgrade runs the listener's
// filters without the buffer, which would hold the upgraded stream waiting for a body's end.
func (t *translator) upgradeConfigs(l ir.Listener, filters []*hcmv3.HttpFilter) []*hcmv3.HttpConnectionManager_UpgradeConfig {
	if !t.anyOperation(l, func(op *ir.Operation) bool { return op.WebSocket != nil }) {
		return nil
	}
	var chain []*hcmv3.HttpFilter
	for _, f := range filters {
		if f.Name != FilterBuffer {
			chain = append(chain, proto.Clone(f).(*hcmv3.HttpFilter))
		}
	}
	return []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: upgradeWebSocket, Filters: chain, Enabled: wrapperspb.Bool(false)}}
}

func (t *translator) httpFilter(name string, cfg proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(cfg)}}
}

// requestTimeout is how long a client has to send a whole request (headers and body); the
// time the backend takes to answer does not count.
const requestTimeout = time.Minute

// localReplies give Envoy's own answers the gateway's JSON body, {"error": CODE, "status": N},
// with a stable code: authz unreachable or too slow (503 ext_authz_error, which also says when
// to retry: authz comes back within seconds, and clients that honour Retry-After do not hammer
// it meanwhile), a rate limit (429 rate_limited), a refused upgrade such as WebSocket (403
// upgrade_not_supported), a backend too slow (504 backend_timeout) or down (503
// backend_unavailable), a body or headers over their limits (413, 431), and, on listeners
// with IP allow lists, an address outside one (403 ip_not_allowed); on listeners with request
// validation, specgate validate unreachable (503 validation_unavailable, with Retry-After). Routes' direct
// responses and authz's denials carry their own bodies and match none of these.
func (t *translator) localReplies(ipAllow, validation bool) *hcmv3.LocalReplyConfig {
	body := func(code string) *corev3.SubstitutionFormatString {
		b, _ := structpb.NewStruct(map[string]any{"error": code, "status": "%RESPONSE_CODE%"})
		return &corev3.SubstitutionFormatString{
			Format:      &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: b},
			ContentType: "application/json",
		}
	}
	cel := func(expr string) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslogv3.ExtensionFilter{Name: "envoy.access_loggers.extension_filters.cel",
				ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: t.pack(&celfilterv3.ExpressionFilter{Expression: expr})}},
		}}
	}
	status := func(code uint32) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{StatusCodeFilter: &accesslogv3.StatusCodeFilter{
			Comparison: &accesslogv3.ComparisonFilter{Op: accesslogv3.ComparisonFilter_EQ, Value: &corev3.RuntimeUInt32{DefaultValue: code}},
		}}}
	}
	flags := func(f ...string) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: f},
		}}
	}
	// Stable error codes, never Envoy's own details (upstream_reset_before_response_started{…}
	// says how Envoy failed, not what the client should do). First match wins.
	var mappers []*hcmv3.ResponseMapper
	if validation {
		// specgate validate unreachable or too slow (validation.failOpen false): as for authz.
		mappers = append(mappers, &hcmv3.ResponseMapper{
			Filter:             cel(`response.code_details.startsWith("ext_proc_error")`),
			HeadersToAdd:       []*corev3.HeaderValueOption{header("retry-after", "1")},
			BodyFormatOverride: body("validation_unavailable"),
		})
	}
	if ipAllow {
		mappers = append(mappers, &hcmv3.ResponseMapper{
			Filter:             cel(`response.code_details.startsWith("rbac_access_denied")`),
			BodyFormatOverride: body("ip_not_allowed"),
		})
	}
	return &hcmv3.LocalReplyConfig{Mappers: append(mappers, []*hcmv3.ResponseMapper{{
		Filter:             cel(`response.code_details == "ext_authz_error"`),
		HeadersToAdd:       []*corev3.HeaderValueOption{header("retry-after", "1")},
		BodyFormatOverride: body("ext_authz_error"),
	}, {
		Filter:             status(http.StatusTooManyRequests), // the ratelimit filter's, with its Retry-After
		BodyFormatOverride: body("rate_limited"),
	}, {
		Filter:             cel(`response.code_details == "upgrade_failed"`), // WebSocket and other upgrades
		BodyFormatOverride: body("upgrade_not_supported"),
	}, {
		Filter:             flags("UT"),
		BodyFormatOverride: body("backend_timeout"),
	}, {
		Filter:             flags("UH", "UF", "URX", "UC", "UO", "NR"),
		BodyFormatOverride: body("backend_unavailable"),
	}, {
		Filter:             status(http.StatusRequestEntityTooLarge),
		BodyFormatOverride: body("request_payload_too_large"),
	}, {
		Filter:             status(http.StatusRequestHeaderFieldsTooLarge),
		BodyFormatOverride: body("request_headers_too_large"),
	}}...)}
}
