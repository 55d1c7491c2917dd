package envoy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/realspecs"
)

// TestRealWorldSpecsServedByEnvoy compiles the real public descriptions (GitHub's REST API,
// OpenAI, Anthropic, Cohere: make specs), with OpenAPI 3.2 methods and backend path prefixes
// beside them, into one static bootstrap and probes the real Envoy: what reaches the backend,
// and what Envoy answers itself.
func TestRealWorldSpecsServedByEnvoy(t *testing.T) {
	backend := e2e.NewBackend(t, "echo")
	addr := "http://127.0.0.1:" + backend.Port()
	specs := t.TempDir()
	if err := realspecs.Write(specs, addr, realspecs.All...); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]string{
		"docs.yaml": `openapi: 3.2.0
info: {title: Docs, version: 1.0.0}
x-specgate: {backend: "{{ADDR}}", basePath: /docs}
security: []
paths:
  /search:
    query: {operationId: querySearch, responses: {"200": {description: ok}}}
    get: {operationId: getSearch, responses: {"200": {description: ok}}}
  /files/{id}:
    additionalOperations:
      COPY: {operationId: copyFile, responses: {"201": {description: ok}}}
      PURGE: {operationId: purgeFile, responses: {"204": {description: ok}}}
`,
		"billing.yaml": `openapi: 3.1.0
info: {title: Billing, version: 1.0.0}
x-specgate: {backend: "{{ADDR}}/internal/billing", basePath: /billing, stripBasePath: true}
security: []
paths:
  /invoices/{id}: {get: {operationId: getInvoice, responses: {"200": {description: ok}}}}
`,
		"ledger.yaml": `openapi: 3.1.0
info: {title: Ledger, version: 1.0.0}
x-specgate: {backend: "{{ADDR}}/api", basePath: /ledger}
security: []
paths:
  /entries: {get: {operationId: listEntries, responses: {"200": {description: ok}}}}
`,
	} {
		e2e.WriteSpec(t, specs, name, spec, map[string]string{"ADDR": addr})
	}
	gw := startStatic(t, specs, e2e.StartAllowAll(t).Addr, nil)

	for _, tc := range []struct {
		name, method, path string
		status             int
		seen               string // METHOD path?query at the backend; "" when Envoy answers
		allow              string
	}{
		{"GitHub: templated path, basePath stripped", "GET", "/github/repos/octocat/hello-world", 200, "GET /repos/octocat/hello-world", ""},
		{"GitHub: a path it does not declare", "GET", "/github/not/a/real/path", 404, "", ""},
		{"GitHub: a method it does not declare", "DELETE", "/github/meta", 405, "", "GET"},
		{"OpenAI: a bearer-protected operation", "POST", "/openai/chat/completions", 200, "POST /chat/completions", ""},
		{"Anthropic: a ?beta=true variant is the path's route", "POST", "/anthropic/v1/messages?beta=true", 200, "POST /v1/messages?beta=true", ""},
		{"Cohere", "POST", "/cohere/v2/chat", 200, "POST /v2/chat", ""},
		{"OpenAPI 3.2 query", "QUERY", "/docs/search", 200, "QUERY /docs/search", ""},
		{"OpenAPI 3.2 additional operation", "COPY", "/docs/files/7", 200, "COPY /docs/files/7", ""},
		{"405 names the 3.2 methods", "PUT", "/docs/search", 405, "", "GET, QUERY"},
		{"405 names additional operations", "GET", "/docs/files/7", 405, "", "COPY, PURGE"},
		{"backend path prefix, basePath stripped", "GET", "/billing/invoices/7", 200, "GET /internal/billing/invoices/7", ""},
		{"backend path prefix, basePath kept", "GET", "/ledger/entries?page=2", 200, "GET /api/ledger/entries?page=2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := backend.Hits()
			req, _ := http.NewRequest(tc.method, gw.pub+tc.path, nil)
			if tc.method == "QUERY" { // Envoy refuses a QUERY without Content-Type (400)
				req, _ = http.NewRequest(tc.method, gw.pub+tc.path, strings.NewReader(`{"q":"x"}`))
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if tc.seen == "" {
				var v map[string]any
				if backend.Hits() != hits || json.Unmarshal(body, &v) != nil {
					t.Errorf("Envoy's own answer expected; backend hits %d → %d, body %s", hits, backend.Hits(), body)
				}
				if got := resp.Header.Get("Allow"); got != tc.allow {
					t.Errorf("Allow %q, want %q", got, tc.allow)
				}
				return
			}
			last := backend.Last()
			got := last.Method + " " + last.URL.Path
			if last.URL.RawQuery != "" {
				got += "?" + last.URL.RawQuery
			}
			if backend.Hits() != hits+1 || got != tc.seen {
				t.Errorf("backend saw %q, want %q", got, tc.seen)
			}
		})
	}

	// Envoy's memory grows with the operations it serves; the pods' limit (deploy/) fixes how
	// many a fleet can have. A compiled regex per tokenless route made it 250 KB an operation
	// here (360 MB), the limit's overload threshold at about 3,000 operations.
	mem, err := gw.envoy.Stat("server.memory_allocated")
	if err != nil {
		t.Fatal(err)
	}
	bytes, _ := strconv.Atoi(mem)
	t.Logf("Envoy: %d operations, %.0f MB allocated, %.0f KB per operation", gw.ops, float64(bytes)/1e6, float64(bytes)/1e3/float64(gw.ops))
	if per := bytes / gw.ops; per > 100_000 {
		t.Errorf("Envoy allocated %d bytes for %d operations: %d per operation, want at most 100 KB", bytes, gw.ops, per)
	}
}
