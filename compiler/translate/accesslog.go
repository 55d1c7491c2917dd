package translate

import (
	"math"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/specgate/specgate/policy"
)

// accessLogs is gateway.yaml's accessLog: one JSON line per request on Envoy's stdout, where
// GKE's logging agent picks it up. httpRequest is Cloud Logging's HttpRequest (it shows as
// the request's line); authz says what authz decided and why, from its dynamic metadata, so
// that "why did this request get 403?" has an answer per request; validation, where an
// operation validates requests, what specgate validate found. The Authorization header,
// cookies and the query string (unless accessLog.query) are never logged.
func (t *translator) accessLogs() []*accesslogv3.AccessLog {
	a := t.set.AccessLog
	if a.Format == "" {
		return nil
	}
	meta := func(key string) string { return "%DYNAMIC_METADATA(" + policy.MetadataNamespace + ":" + key + ")%" }
	// The path the client sent, before any rewrite. Client-chosen values are cut, so that
	// one request cannot write a line of the whole 60 KiB of headers.
	url := "%PATH(NQ:ORIG_OR_PATH):2048%"
	if a.Query {
		url = "%PATH(WQ:ORIG_OR_PATH):2048%"
	}
	// Two kinds of request are allowed without asking authz, so decision and reason are
	// empty: edgeCache is true when the edge decision cache replayed an earlier allow of
	// authz, tokenless when a tokenless route served an anonymous request (tokenless.go).
	authz := map[string]any{"decision": meta(policy.MetaDecision), "reason": meta(policy.MetaReason), "plan": meta(policy.MetaPlan),
		"edgeCache": "%DYNAMIC_METADATA(" + policy.CacheFilter + ":hit)%",
		"tokenless": "%METADATA(ROUTE:" + metaTokenless + ":tokenless)%"}
	switch a.Subject {
	case "", "plain":
		authz["subject"] = meta(policy.MetaSubject)
	case "hash":
		authz["subjectHash"] = meta(policy.MetaSubjectHash)
	}
	fields := map[string]any{
		"time": "%START_TIME%",
		"httpRequest": map[string]any{
			"requestMethod": "%REQ(:METHOD)%",
			"requestUrl":    url,
			"status":        "%RESPONSE_CODE%",
			"requestSize":   "%BYTES_RECEIVED%",
			"responseSize":  "%BYTES_SENT%",
			// Cloud Logging wants a duration such as "0.123s"; no operator writes seconds.
			"latency":   "%CEL(double(request.duration.getSeconds()) + double(request.duration.getMilliseconds()) / 1000.0)%s",
			"remoteIp":  "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
			"userAgent": "%REQ(USER-AGENT):256%",
			"protocol":  "%PROTOCOL%",
		},
		"route":         "%ROUTE_NAME%",
		"responseFlags": "%RESPONSE_FLAGS%",
		"details":       "%RESPONSE_CODE_DETAILS%",
		"durationMs":    "%DURATION%",
		"upstreamMs":    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"requestId":     "%REQ(X-REQUEST-ID):64%",
		"traceparent":   "%REQ(TRACEPARENT):64%",
		"authz":         authz,
	}
	if t.anyValidation() {
		fields["validation"] = map[string]any{"result": "%DYNAMIC_METADATA(" + policy.ValidateNamespace + ":" + policy.MetaResult + ")%"}
	}
	if tr := t.set.Tracing; tr.OTLP != "" {
		// The trace Envoy's tracer continued or started (empty when the request is not sampled);
		// with a GCP project, in the field by which Cloud Logging links the line to Cloud Trace.
		fields["traceId"] = "%TRACE_ID%"
		if tr.GCPProject != "" {
			fields["logging.googleapis.com/trace"] = "projects/" + tr.GCPProject + "/traces/%TRACE_ID%"
		}
	}
	format, _ := structpb.NewStruct(fields)
	log := &accesslogv3.AccessLog{
		Name: "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: t.pack(&streamv3.StdoutAccessLog{
			AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: format},
			}},
		})},
	}
	if a.Sample > 0 && a.Sample < 1 {
		log.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_RuntimeFilter{
			RuntimeFilter: &accesslogv3.RuntimeFilter{
				RuntimeKey: "specgate.access_log.sample",
				PercentSampled: &typev3.FractionalPercent{
					Numerator:   max(1, uint32(math.Round(a.Sample*1e6))),
					Denominator: typev3.FractionalPercent_MILLION,
				},
				UseIndependentRandomness: true,
			},
		}}
	}
	return []*accesslogv3.AccessLog{log}
}
