package compiler_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

// writeSpecs generates services × ops operations (half templated, a fifth rate limited, a
// tenth internal) into dir, the shape of a real fleet.
func writeSpecs(tb testing.TB, dir string, services, ops int) {
	tb.Helper()
	for s := range services {
		var b strings.Builder
		fmt.Fprintf(&b, `openapi: 3.1.0
info: {title: Service %d, version: 1.0.0}
x-specgate: {service: svc-%d, backend: "http://svc-%d.shop.svc.cluster.local:8080", basePath: /svc%d, allowedHeaders: [X-Tenant]}
security: [{oauth: [svc%d:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://auth.example.com/token", scopes: {"svc%d:read": r, "svc%d:write": w}}}}
paths:
`, s, s, s, s, s, s, s)
		// ops operations on ops/2 paths: a literal path with GET (every fifth also a rate
		// limited internal POST) and a templated path with GET, until ops are written.
		for i, p := 0, 0; i < ops; p++ {
			fmt.Fprintf(&b, "  /things%d:\n    get: {operationId: list%d, responses: {\"200\": {description: ok}}}\n", p, p)
			i++
			if p%5 == 4 && i < ops {
				fmt.Fprintf(&b, "    post: {operationId: create%d, security: [{oauth: [\"svc%d:write\"]}], x-specgate: {rateLimits: [{requests: 10, per: minute, key: client}], exposure: internal}, responses: {\"201\": {description: ok}}}\n", p, s)
				i++
			}
			if i < ops {
				fmt.Fprintf(&b, "  /things%d/{id}:\n    get: {operationId: get%d, parameters: [{name: id, in: path, required: true, schema: {type: string}}], responses: {\"200\": {description: ok}}}\n", p, p)
				i++
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("svc-%03d.yaml", s)), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchCompile(b *testing.B, services, ops int) {
	dir := b.TempDir()
	writeSpecs(b, dir, services, ops)
	opts := translate.Options{Gateway: config.Default()}
	routes := 0
	var peak uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		gw, diags := compiler.Compile(dir)
		if err := diags.Err(); err != nil {
			b.Fatal(err)
		}
		res, err := translate.Translate(gw, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := res.Version(); err != nil {
			b.Fatal(err)
		}
		routes = 0
		for _, s := range gw.Services {
			routes += len(s.Operations)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ReportMetric(float64(routes), "routes")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkCompile2000 is 100 specs × 20 operations (goal < 300 ms).
func BenchmarkCompile2000(b *testing.B) { benchCompile(b, 100, 20) }

// BenchmarkCompile10000 is 500 specs × 20 operations (goal < 2 s).
func BenchmarkCompile10000(b *testing.B) { benchCompile(b, 500, 20) }
