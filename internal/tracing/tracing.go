// Package tracing is OpenTelemetry for the roles Envoy calls (authz, ratelimit): spans exported
// over OTLP/gRPC to gateway.yaml tracing.otlp, the W3C trace context taken from each gRPC call
// by OpenTelemetry's grpc instrumentation, and a sampler that follows the caller, so that a
// role traces exactly the requests Envoy traces (Envoy decides: tracing.sampling, or the
// client's traceparent). With tracing off, its tracers are no-ops and the gRPC server is not
// instrumented.
package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

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

// ServerOptions instrument the role's gRPC server: each call continues the trace in its
// traceparent metadata, in a server span. None when tracing is off.
func (p *Provider) ServerOptions() []grpc.ServerOption {
	if p.sdk == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(p.sdk),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	))}
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
