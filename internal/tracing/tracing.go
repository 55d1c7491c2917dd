// Package tracing is OpenTelemetry for the roles Envoy calls (authz, ratelimit): spans exported
// over OTLP/gRPC to gateway.yaml tracing.otlp, the W3C trace context of each sampled gRPC call
// continued, and a sampler that follows the caller, so that a role traces exactly the requests
// Envoy traces (Envoy decides: tracing.sampling, or the client's traceparent). With tracing
// off, its tracers are no-ops and the gRPC server is not instrumented.
package tracing

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/specgate/specgate/config"
)

// Provider is one role's tracing.
type Provider struct {
	sdk *sdktrace.TracerProvider // nil when tracing is off
}

// Start sets up tracing for the role named service ("specgate-authz"): off when cfg.OTLP is
// empty. The exporter connects lazily; spans it cannot deliver are dropped, never waited for.
func Start(ctx context.Context, cfg config.Tracing, service string) (*Provider, error) {
	if cfg.OTLP == "" {
		return &Provider{}, nil
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLP), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	return &Provider{sdk: sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
		// Only what Envoy traces: a call without a sampled parent records nothing.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())),
	)}, nil
}

// Off is the tracer of a role without tracing: its spans record nothing.
var Off trace.Tracer = noop.NewTracerProvider().Tracer("")

// Tracer is the role's tracer for its own spans.
func (p *Provider) Tracer(name string) trace.Tracer {
	if p.sdk == nil {
		return Off
	}
	return p.sdk.Tracer(name)
}

// ServerOptions instrument the role's gRPC server: a unary call whose traceparent says
// sampled continues that trace in a server span. None when tracing is off.
//
// Only sampled calls are touched: the sampler would record nothing else
// (ParentBased(NeverSample)), and an interceptor, unlike a stats handler (OpenTelemetry's
// otelgrpc), costs an untraced call nothing: with a stats handler installed, grpc-go copies
// each call's metadata, peer and payload sizes into events, and otelgrpc extracts the parent
// and starts a span that records nothing; some 40 allocations per call on the 99 % of
// requests Envoy does not sample (BenchmarkCheckOverGRPCTracing, docs/benchmarks.md).
func (p *Provider) ServerOptions() []grpc.ServerOption {
	if p.sdk == nil {
		return nil
	}
	tr := p.sdk.Tracer("github.com/specgate/specgate/internal/tracing")
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !sampledParent(ctx) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		ctx = propagation.TraceContext{}.Extract(ctx, mdCarrier(md))
		name := strings.TrimPrefix(info.FullMethod, "/")
		service, method, _ := strings.Cut(name, "/")
		ctx, span := tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service), attribute.String("rpc.method", method)))
		defer span.End()
		resp, err := handler(ctx, req)
		st := status.Convert(err)
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", int64(st.Code())))
		if serverFault[st.Code()] { // as otelgrpc: a caller's mistake is not the server's error
			span.SetStatus(otelcodes.Error, st.Message())
		}
		return resp, err
	})}
}

// serverFault are the gRPC codes that mark a server span as failed (OpenTelemetry's semantic
// conventions for RPC servers).
var serverFault = map[grpccodes.Code]bool{grpccodes.Unknown: true, grpccodes.DeadlineExceeded: true,
	grpccodes.Unimplemented: true, grpccodes.Internal: true, grpccodes.Unavailable: true, grpccodes.DataLoss: true}

// mdCarrier reads the trace context from gRPC metadata (keys are lower case there).
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// sampledParent reads the sampled flag of the call's traceparent (W3C: version-traceid-
// parentid-flags), the first one as OpenTelemetry's propagator does. One it could not read
// would have given no parent, so nothing sampled either.
func sampledParent(ctx context.Context) bool {
	tp := metadata.ValueFromIncomingContext(ctx, "traceparent")
	if len(tp) == 0 {
		return false
	}
	v := tp[0]
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	flags, err := strconv.ParseUint(v[53:55], 16, 8)
	return err == nil && flags&1 == 1
}

// noSpan is the span of what is not traced; boxed once, so handing it out allocates nothing.
var noSpan trace.Span = noop.Span{}

// Child starts a span under ctx's span when that one records (the request is traced), and
// otherwise returns ctx and a span that records nothing, without allocating: the hot path of
// a request that is not traced (tracing off, or not sampled) pays nothing for its spans.
// Guard attributes with span.IsRecording() for the same reason.
func Child(ctx context.Context, tr trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return tr.Start(ctx, name, opts...)
}

// Shutdown exports what is buffered, for at most 5 s, and stops.
func (p *Provider) Shutdown() {
	if p.sdk == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.sdk.Shutdown(ctx)
}
