// Package validate is specgate validate, Envoy's external processor (ext_proc) for the
// operations that ask for request validation (x-specgate validate: request): it checks a
// request's parameters and body against the operation's OpenAPI description with
// kin-openapi's openapi3filter, and refuses what breaks it with an RFC 9457 problem. The
// descriptions come from the control plane over ADS, in the snapshot that carries the routes.
package validate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/grpcserver"
	"github.com/specgate/specgate/xds/adsclient"
)

// Options configure the processor.
type Options struct {
	GRPCAddr string // default ":9005"
	HTTPAddr string // default ":9006"
	XDSAddr  string // control plane, host:port (required)
	NodeID   string // default "specgate-validate-<hostname>"
	Logger   *slog.Logger
}

// Server is a running processor with its gRPC and HTTP listeners.
type Server struct {
	*grpcserver.Running
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Start listens and serves in the background until ctx ends. It is ready (/readyz, gRPC
// health) once the control plane sent its first set of descriptions.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.XDSAddr == "" {
		return nil, errors.New("validate: the control plane's address is required")
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = ":9005"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":9006"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient(o.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("validate: xds %s: %w", o.XDSAddr, err)
	}
	grpcLn, httpLn, err := grpcserver.Listen(ctx, o.GRPCAddr, o.HTTPAddr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("validate: %w", err)
	}
	schemas := NewSchemas()
	m := newMetrics(schemas)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	// A message carries a whole body: up to the largest body limit, with its headers.
	gs := grpcserver.New(10_000, grpc.MaxRecvMsgSize(config.MaxRequestBodyLimit+1<<20))
	extprocv3.RegisterExternalProcessorServer(gs, NewProcessor(schemas, m, o.Logger))
	healthpb.RegisterHealthServer(gs, hs)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	adminhttp.Probes(mux, func() (map[string]string, error) {
		if !schemas.Ready() {
			return nil, errors.New("no descriptions from the control plane yet")
		}
		return nil, nil
	})
	node := &corev3.Node{Id: grpcserver.NodeID("validate", o.NodeID), Cluster: "specgate-validate"}
	follow := func(ctx context.Context) error {
		adsclient.Follow(ctx, conn, node, resource.ExtensionConfigType, func(res []*anypb.Any) error {
			docs, err := decode(res)
			if err == nil {
				err = schemas.Set(docs)
			}
			if err == nil {
				hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
				o.Logger.Info("descriptions applied", "descriptions", len(docs))
			}
			return err
		}, o.Logger)
		return ctx.Err()
	}
	s := &Server{Running: grpcserver.NewRunning(grpcLn, httpLn)}
	o.Logger.Info("validate serving", "grpc", grpcLn.Addr().String(), "http", httpLn.Addr().String(), "xds", o.XDSAddr)
	go func() {
		s.Fail(grpcserver.Serve(ctx, gs, hs, grpcLn, adminhttp.Server(mux), httpLn, 5*time.Second, follow))
		conn.Close()
		s.Stopped()
	}()
	return s, nil
}

// decode reads the descriptions of the control plane's ExtensionConfig resources: each a
// TypedExtensionConfig named by the description's hash, holding its JSON.
func decode(res []*anypb.Any) (map[string][]byte, error) {
	docs := make(map[string][]byte, len(res))
	for _, a := range res {
		var tc corev3.TypedExtensionConfig
		var doc wrapperspb.BytesValue
		if err := a.UnmarshalTo(&tc); err != nil {
			return nil, fmt.Errorf("resource %s: %w", a.GetTypeUrl(), err)
		}
		if err := tc.GetTypedConfig().UnmarshalTo(&doc); err != nil {
			return nil, fmt.Errorf("description %s: %w", tc.GetName(), err)
		}
		docs[tc.GetName()] = doc.GetValue()
	}
	return docs, nil
}
