package tracing

import (
	"context"
	"net"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/specgate/specgate/config"
)

// A role's gRPC server continues exactly the traces Envoy samples: a call whose traceparent
// says sampled runs in a recording span of that trace; any other call in none.
func TestServerTracesSampledCallsOnly(t *testing.T) {
	p, err := Start(context.Background(), config.Tracing{OTLP: "127.0.0.1:1"}, "test") // nothing is delivered
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Shutdown)
	var seen trace.SpanContext
	var recording bool
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		s := trace.SpanFromContext(ctx)
		seen, recording = s.SpanContext(), s.IsRecording()
		return h(ctx, req)
	}
	gs := grpc.NewServer(append(p.ServerOptions(), grpc.ChainUnaryInterceptor(record))...) // record runs inside the tracing
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct {
		name, traceparent string
		want              bool
	}{
		{"sampled", "00-" + traceID + "-00f067aa0ba902b7-01", true},
		{"sampled, other flags set", "00-" + traceID + "-00f067aa0ba902b7-03", true},
		{"not sampled", "00-" + traceID + "-00f067aa0ba902b7-00", false},
		{"no traceparent", "", false},
		{"unreadable", "00-" + traceID + "-00f067aa0ba902b7-zz", false},
		{"too short", "00-4bf92f-01", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.traceparent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", c.traceparent)
			}
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			if recording != c.want {
				t.Fatalf("recording span %v, want %v", recording, c.want)
			}
			if c.want && seen.TraceID().String() != traceID {
				t.Errorf("span of trace %s, want the caller's %s", seen.TraceID(), traceID)
			}
		})
	}
}
