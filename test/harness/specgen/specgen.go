// Package specgen writes synthetic specs for tests and benchmarks: services × ops operations,
// half of them templated, a fifth rate limited, a tenth internal — the shape of a real fleet.
package specgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Fleet returns the spec files (svc-NNN.yaml → content) of services services with ops
// operations each.
func Fleet(services, ops int) map[string][]byte {
	files := make(map[string][]byte, services)
	for s := range services {
		files[fmt.Sprintf("svc-%03d.yaml", s)] = Service(s, ops)
	}
	return files
}

// Service is the spec of service number s with ops operations.
func Service(s, ops int) []byte { return Documented(s, ops, 0) }

// Documented is Service with at least docBytes of documentation that the gateway does not
// route on but must keep: component schemas with descriptions, as real descriptions have.
func Documented(s, ops, docBytes int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `openapi: 3.1.0
info: {title: Service %d, version: 1.0.0}
x-specgate: {service: svc-%d, backend: "http://svc-%d.shop.svc.cluster.local:8080", basePath: /svc%d, allowedHeaders: [X-Tenant]}
security: [{oauth: [svc%d:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://auth.example.com/token", scopes: {"svc%d:read": r, "svc%d:write": w}}}}
`, s, s, s, s, s, s, s)
	if docBytes > 0 {
		b.WriteString("  schemas:\n")
		for i := 0; b.Len() < docBytes; i++ {
			fmt.Fprintf(&b, "    Thing%d:\n      type: object\n      description: >-\n        Thing %d of service %d. %s\n      properties:\n        id: {type: string, description: The identifier of thing %d, unique within service %d.}\n        name: {type: string, maxLength: 200}\n",
				i, i, s, strings.Repeat("A resource that clients list, read and change through this service's operations. ", 4), i, s)
		}
	}
	b.WriteString("paths:\n")
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
	return []byte(b.String())
}

// Root is the spec of an anonymous service at the gateway's root (no basePath) with a GET on
// each path, so that an operation can move between two services and keep its public path.
func Root(name, backend string, paths ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "openapi: 3.1.0\ninfo: {title: %s, version: 1.0.0}\nx-specgate: {service: %s, backend: %q}\nsecurity: []\npaths:\n", name, name, backend)
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s: {get: {operationId: get%s, responses: {\"200\": {description: ok}}}}\n", p, strings.NewReplacer("/", "_", "{", "", "}", "").Replace(p))
	}
	return []byte(b.String())
}

// Write writes files into dir.
func Write(dir string, files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
