package xds

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/specgate/specgate/config"
)

// genFiles is services × ops operations in memory, the shape of compiler's benchmark fleet.
func genFiles(services, ops int) map[string][]byte {
	files := map[string][]byte{}
	for s := range services {
		var b strings.Builder
		fmt.Fprintf(&b, "openapi: 3.1.0\ninfo: {title: S%d, version: '1'}\nx-specgate: {service: svc-%d, backend: 'http://svc-%d:8080', basePath: /svc%d}\nsecurity: [{oauth: [read]}]\n", s, s, s, s)
		b.WriteString("components: {securitySchemes: {oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://a/t', scopes: {read: r}}}}}}\npaths:\n")
		for i := 0; i < ops; i += 2 {
			fmt.Fprintf(&b, "  /t%d:\n    get: {operationId: l%d, x-specgate: {rateLimits: [{requests: 10, per: second, key: client}]}, responses: {'200': {description: ok}}}\n", i, i)
			fmt.Fprintf(&b, "  /t%d/{id}:\n    get: {operationId: g%d, parameters: [{name: id, in: path, required: true, schema: {type: string}}], responses: {'200': {description: ok}}}\n", i, i)
		}
		files[fmt.Sprintf("svc-%03d.yaml", s)] = []byte(b.String())
	}
	return files
}

// BenchmarkSnapshotBuild is the whole candidate pipeline of a push: compile, translate,
// validate, hash and snapshot (without the optional envoy --mode validate).
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []struct{ services, ops int }{{100, 20}, {500, 20}} {
		b.Run(fmt.Sprintf("routes=%d", n.services*n.ops), func(b *testing.B) {
			s, err := New(Options{SpecDir: b.TempDir(), Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			files := genFiles(n.services, n.ops)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.build(files); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
