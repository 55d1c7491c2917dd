package envoy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

const cartsSpec = `openapi: 3.1.0
info: {title: Carts, version: 1.0.0}
x-specgate: {service: carts, backend: "http://127.0.0.1:{{PORT}}", basePath: /carts, validate: request}
security: []
paths:
  /{cart}/items:
    parameters:
      - {name: cart, in: path, required: true, schema: {type: string, format: uuid}}
    post:
      operationId: addItem
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Item"}
      responses: {"201": {description: added}}
    get:
      operationId: listItems
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
      responses: {"200": {description: ok}}
  /health:
    get: {operationId: health, x-specgate: {validate: none}, parameters: [{name: n, in: query, schema: {type: integer}}], responses: {"200": {description: ok}}}
components:
  schemas:
    Item:
      type: object
      additionalProperties: false
      required: [sku, quantity]
      properties:
        sku: {type: string, minLength: 1}
        quantity: {type: integer, minimum: 1}
        id: {type: string, readOnly: true}
        addedAt: {type: string, format: date-time}
`

const cart = "/carts/7b0e7a52-4f0c-4c43-9e0e-1f1f0f7d2a11/items"

type problem struct {
	Type, Title, Error string
	Status             int
	Errors             []struct{ Pointer, In, Name, Detail string }
}

// Requests to operations with validate: request reach the backend only when they match the
// description; the others get a 400 (or 415) problem that names each broken rule, and the
// backend never sees them. Operations without it are untouched. With the processor down,
// validated routes fail closed.
func TestRequestValidation(t *testing.T) {
	t.Parallel()
	backend := e2e.NewBackend(t, "carts")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"carts.yaml": cartsSpec},
		Vars: map[string]string{"PORT": backend.Port()}, Validate: true,
		Configure: func(c *config.Gateway) { c.AccessLog = config.AccessLog{Format: "json"} }})
	send := func(method, path, ctype, body string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, s.Public+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	valid := []struct{ method, path, ctype, body string }{
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 2, "addedAt": "2026-12-07T10:00:00Z"}`},
		{"GET", cart + "?limit=10", "", ""},
		{"GET", cart, "", ""},
		{"GET", "/carts/health?n=notanumber", "", ""}, // validate: none
	}
	for _, v := range valid {
		before := backend.Hits()
		if code, _, b := send(v.method, v.path, v.ctype, v.body); code != 200 || backend.Hits() != before+1 {
			t.Errorf("%s %s %s: %d %s, backend hits %d → %d; want 200 from the backend", v.method, v.path, v.body, code, b, before, backend.Hits())
		}
	}
	invalid := []struct {
		method, path, ctype, body string
		status                    int
		want                      string // in: name, or the body pointer
	}{
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 0}`, 400, "/quantity"},
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 1, "colour": "red"}`, 400, "/colour"},
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 1, "id": "x"}`, 400, "/id"},
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 1, "addedAt": "yesterday"}`, 400, "/addedAt"},
		{"POST", cart, "application/json", `{"quantity": 1}`, 400, "/sku"},
		{"POST", cart, "application/json", `{"sku": "A-1", "quantity": 0, "quantity": 1}`, 400, "/quantity"}, // said twice: refused
		{"POST", cart, "application/json", `{"sku": `, 400, ""},
		{"POST", cart, "text/plain", `sku=A-1`, 415, "header: Content-Type"},
		{"GET", cart + "?limit=0", "", "", 400, "query: limit"},
		{"GET", "/carts/not-a-uuid/items", "", "", 400, "path: cart"},
	}
	for _, c := range invalid {
		before := backend.Hits()
		code, h, b := send(c.method, c.path, c.ctype, c.body)
		var p problem
		_ = json.Unmarshal(b, &p)
		var got []string
		for _, e := range p.Errors {
			if e.In != "" {
				got = append(got, e.In+": "+e.Name)
			} else {
				got = append(got, e.Pointer)
			}
		}
		if code != c.status || h.Get("Content-Type") != "application/problem+json" || p.Status != c.status || backend.Hits() != before {
			t.Errorf("%s %s %s: %d %q %s (backend hits %d → %d); want %d application/problem+json, no backend hit",
				c.method, c.path, c.body, code, h.Get("Content-Type"), b, before, backend.Hits(), c.status)
			continue
		}
		found := false
		for _, g := range got {
			found = found || g == c.want
		}
		if !found {
			t.Errorf("%s %s %s: problems %v (%s), want one at %q", c.method, c.path, c.body, got, b, c.want)
		}
	}

	// A body over the limit is refused by Envoy before it is validated (or buffered whole).
	before := backend.Hits()
	big := `{"sku": "` + strings.Repeat("A", 2<<20) + `", "quantity": 1}`
	if code, _, b := send("POST", cart, "application/json", big); code != 413 || backend.Hits() != before {
		t.Errorf("a 2 MiB body: %d %.100s, want 413", code, b)
	}

	// The access log says what validation found, per request.
	results := map[string]int{}
	testutil.Eventually(t, 10*time.Second, "access-log lines with validation results", func() bool {
		results = map[string]int{}
		for _, l := range strings.Split(s.Envoy.Log(), "\n") {
			var ll struct{ Validation struct{ Result string } }
			if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &ll) == nil {
				results[ll.Validation.Result]++
			}
		}
		return results["valid"] == len(valid)-1 && results["invalid"] == len(invalid)
	})

	// The processor down: validated routes answer 503 validation_unavailable with Retry-After;
	// the others still reach the backend.
	s.Validate.Kill()
	code, h, b := send("GET", cart, "", "")
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(string(b), `"validation_unavailable"`) {
		t.Errorf("validated route with the processor down: %d %q %s, want 503 validation_unavailable with Retry-After", code, h.Get("Retry-After"), b)
	}
	if code, _, b := send("GET", "/carts/health", "", ""); code != 200 {
		t.Errorf("route without validation, processor down: %d %s", code, b)
	}
}
