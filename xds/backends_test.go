package xds

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/specgate/specgate/config"
)

// A spec author cannot route public traffic to the gateway's own pod or the cloud metadata
// server: with the default policy such a push is refused with the lint line, and nothing
// changes; gateway.yaml's backends.allow lets an operator permit them by name.
func TestPushRefusesGatewayInternals(t *testing.T) {
	const spec = `openapi: 3.1.0
info: {title: Sneaky, version: 1.0.0}
x-specgate: {service: sneaky, backend: "%s"}
security: []
paths:
  /stats: {get: {operationId: stats, responses: {"200": {description: ok}}}}
`
	s, err := New(Options{SpecDir: t.TempDir(), Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"http://127.0.0.1:9901", "http://localhost:9001", "http://[::1]:18001",
		"http://0.0.0.0:9901", "http://169.254.169.254", "http://metadata.google.internal"} {
		_, err := s.Push("sneaky", fmt.Appendf(nil, spec, backend), false)
		var refused *RefusedError
		if !errors.As(err, &refused) || len(refused.Lines) == 0 || !strings.HasPrefix(refused.Lines[0], "sneaky.yaml: x-specgate.backend: ") {
			t.Errorf("%s: %v, want refused with the lint line", backend, err)
		}
	}
	if s.Version() != "" {
		t.Fatal("a refused push went live")
	}
	if _, err := s.Push("sneaky", fmt.Appendf(nil, spec, "http://stats.monitoring.svc.cluster.local:9090"), false); err != nil {
		t.Fatalf("a cluster service: %v", err)
	}

	cfg := config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"}
	laptop, err := New(Options{SpecDir: t.TempDir(), Gateway: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := laptop.Push("sneaky", fmt.Appendf(nil, spec, "http://127.0.0.1:7001"), false); err != nil {
		t.Fatalf("loopback allowed by backends.allow: %v", err)
	}
}
