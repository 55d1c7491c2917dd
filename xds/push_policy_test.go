package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
	cfg := config.Default()
	cfg.Backends.Resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "vm" { // as /etc/hosts says on this kind of machine, and public names like localtest.me
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	s, err := New(Options{SpecDir: t.TempDir(), Gateway: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"http://127.0.0.1:9901", "http://localhost:9001", "http://[::1]:18001",
		"http://0.0.0.0:9901", "http://169.254.169.254", "http://metadata.google.internal",
		// A name that resolves to loopback (/etc/hosts), and the other clouds' metadata servers.
		"http://vm:9901", "http://[fd00:ec2::254]", "http://[fd20:ce::254]", "http://100.100.100.200",
		// The gateway's own Services: the internal listener, reached from the public one.
		"http://specgate-internal.specgate.svc.cluster.local:8081", "http://specgate-xds.specgate.svc.cluster.local.:18001"} {
		_, err := s.Push("sneaky", fmt.Appendf(nil, spec, backend), PushOptions{AllowRisky: true})
		var refused *RefusedError
		if !errors.As(err, &refused) || len(refused.Lines) == 0 || !strings.HasPrefix(refused.Lines[0], "sneaky.yaml:3: x-specgate.backend: ") {
			t.Errorf("%s: %v, want refused with the lint line", backend, err)
		}
	}
	if s.Version() != "" {
		t.Fatal("a refused push went live")
	}
	if _, err := s.Push("sneaky", fmt.Appendf(nil, spec, "http://stats.monitoring.svc.cluster.local:9090"), PushOptions{AllowRisky: true}); err != nil {
		t.Fatalf("a cluster service: %v", err)
	}

	cfg = config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"}
	laptop, err := New(Options{SpecDir: t.TempDir(), Gateway: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := laptop.Push("sneaky", fmt.Appendf(nil, spec, "http://127.0.0.1:7001"), PushOptions{AllowRisky: true}); err != nil {
		t.Fatalf("loopback allowed by backends.allow: %v", err)
	}
}

// Without AllowRisky (the default of the Go API, the HTTP API and specgate push), a change that
// widens access is refused with its security diff and nothing changes; one that does not is
// taken.
func TestPushRefusesRiskyWhenAsked(t *testing.T) {
	const spec = `openapi: 3.1.0
info: {title: Orders, version: 1.0.0}
x-specgate: {service: orders, backend: "http://orders.shop.svc.cluster.local:8080"}
components: {securitySchemes: {oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a/t", scopes: {admin: a}}}}}}
paths:
  /orders: {delete: {operationId: purge, security: [{oauth: [admin]}], %s responses: {"204": {description: ok}}}}
`
	s, err := New(Options{SpecDir: t.TempDir(), Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	internal := fmt.Appendf(nil, spec, "x-specgate: {exposure: internal},")
	if _, err := s.Push("orders", internal, PushOptions{AllowRisky: true}); err != nil {
		t.Fatal(err)
	}
	version := s.Version()
	_, err = s.Push("orders", fmt.Appendf(nil, spec, ""), PushOptions{})
	var refused *RefusedError
	if !errors.As(err, &refused) || len(refused.Changes) != 1 || refused.Changes[0].String() != "! orders DELETE /orders: became public" {
		t.Fatalf("risky push: %v %+v", err, refused)
	}
	if s.Version() != version {
		t.Fatal("a refused risky push went live")
	}
	narrower := fmt.Appendf(nil, spec, "x-specgate: {exposure: internal, timeout: 5s},")
	if res, err := s.Push("orders", narrower, PushOptions{}); err != nil || !res.Applied {
		t.Fatalf("a change that widens nothing: %v", err)
	}
}

// A new service cannot declare paths under another service's basePath (where it would win
// over orders' templates and, allowed the Authorization header, receive orders' tokens), nor
// nest its basePath there, unless gateway.yaml shares the prefix.
func TestPushRefusesPathsUnderAnotherService(t *testing.T) {
	const orders = `openapi: 3.1.0
info: {title: Orders, version: 1.0.0}
x-specgate: {service: orders, backend: "http://orders.shop.svc.cluster.local:8080", basePath: /orders}
security: []
paths:
  /{id}: {get: {operationId: getOrder, responses: {"200": {description: ok}}}}
`
	const intruder = `openapi: 3.1.0
info: {title: Intruder, version: 1.0.0}
x-specgate: {service: intruder, backend: "http://intruder.shop.svc.cluster.local:8080", %s allowedHeaders: [Authorization]}
security: []
paths:
  %s: {get: {operationId: grab, responses: {"200": {description: ok}}}}
`
	for _, shared := range []bool{false, true} {
		cfg := config.Default()
		if shared {
			cfg.SharedPrefixes = []string{"/orders"}
		}
		s, err := New(Options{SpecDir: t.TempDir(), Gateway: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Push("orders", []byte(orders), PushOptions{AllowRisky: true}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ base, path string }{{"", "/orders/mine"}, {"basePath: /orders/extra,", "/mine"}} {
			_, err := s.Push("intruder", fmt.Appendf(nil, intruder, c.base, c.path), PushOptions{AllowRisky: true})
			var refused *RefusedError
			switch {
			case shared && err != nil:
				t.Errorf("shared /orders, %s%s: %v", c.base, c.path, err)
			case !shared && (!errors.As(err, &refused) || len(refused.Lines) == 0 || !strings.Contains(refused.Lines[0], "the basePath of service orders")):
				t.Errorf("%s%s: %v, want refused naming orders' basePath", c.base, c.path, err)
			}
			if shared {
				_, _ = s.Delete("intruder", PushOptions{AllowRisky: true})
			}
		}
	}
}
