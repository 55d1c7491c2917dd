package e2e

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

// OTLP is an OTLP/gRPC trace receiver on 127.0.0.1, built on the official OTLP protobufs: it
// keeps every export it receives, as Envoy's tracer and the roles' exporters send them.
type OTLP struct {
	collectortrace.UnimplementedTraceServiceServer
	Addr string

	mu      sync.Mutex
	exports []*collectortrace.ExportTraceServiceRequest
}

// Span is one received span with the service.name of the resource that sent it.
type Span struct {
	Service string
	*tracepb.Span
}

// TraceID and SpanID, ParentID are the span's ids in hex ("" for no parent).
func (s Span) TraceID() string  { return hex.EncodeToString(s.Span.TraceId) }
func (s Span) SpanID() string   { return hex.EncodeToString(s.Span.SpanId) }
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr is the string form of one of the span's attributes ("" when absent).
func (s Span) Attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v := kv.GetValue().GetStringValue(); v != "" {
				return v
			}
			return protojson.Format(kv.GetValue())
		}
	}
	return ""
}

// StartOTLP serves the receiver until the test ends.
func StartOTLP(t testing.TB) *OTLP {
	o := &OTLP{}
	o.Addr = serveGRPC(t, func(gs *grpc.Server) { collectortrace.RegisterTraceServiceServer(gs, o) })
	return o
}

func (o *OTLP) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	o.exports = append(o.exports, req)
	o.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans are the spans of one trace (hex id) received so far.
func (o *OTLP) Spans(traceID string) []Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Span
	for _, req := range o.exports {
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if s := (Span{service, sp}); s.TraceID() == traceID {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out
}

// Dump is everything received, as JSON: for asserting what never appears in a span.
func (o *OTLP) Dump() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, req := range o.exports {
		b.WriteString(protojson.Format(req))
	}
	return b.String()
}
