package validate

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// One description in OpenAPI 3.0 and 3.1: kin-openapi checks them with two validators (its
// own, and JSON Schema 2020-12), which report problems differently.
const cartsDoc = `openapi: %s
info: {title: Carts, version: 1.0.0}
paths:
  /{cart}/items:
    parameters:
      - {name: cart, in: path, required: true, schema: {type: string, format: uuid}}
    post:
      parameters:
        - {name: X-Request-Priority, in: header, schema: {type: integer, maximum: 9}}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Cart"}
      responses: {"201": {description: added}}
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}
      responses: {"200": {description: ok}}
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
        email: {type: string, format: email}
    Cart:
      type: object
      required: [items]
      properties:
        items: {type: array, items: {$ref: "#/components/schemas/Item"}}
        note: {type: string, maxLength: 10}
`

const cartPath = "/shop/carts/7b0e7a52-4f0c-4c43-9e0e-1f1f0f7d2a11/items"

func TestCheck(t *testing.T) {
	cases := []struct {
		name, method, path, ctype, body string
		headers                         []string // X-Request-Priority, each value on a line of its own
		status                          int
		want                            []string // pointers, or "in name"
	}{
		{name: "valid", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 1, "email": "a@b.c"}]}`},
		{name: "valid get", method: "GET", path: cartPath + "?limit=5"},
		{name: "below minimum", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 0}]}`, status: 400, want: []string{"/items/0/quantity"}},
		{name: "two rules", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "", "quantity": 1}], "note": "far too long a note"}`, status: 400, want: []string{"/items/0/sku", "/note"}},
		{name: "missing required", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A"}]}`, status: 400, want: []string{"/items/0/quantity"}},
		{name: "unknown property", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 1, "colour": "red"}]}`, status: 400, want: []string{"/items/0/colour"}},
		{name: "read-only property", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 1, "id": "x"}]}`, status: 400, want: []string{"/items/0/id"}},
		{name: "format", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 1, "email": "nobody"}]}`, status: 400, want: []string{"/items/0/email"}},
		{name: "wrong type", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": "A"}`, status: 400, want: []string{"/items"}},
		{name: "malformed JSON", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [`, status: 400, want: []string{""}},
		{name: "no body", method: "POST", path: cartPath, ctype: "application/json", status: 400, want: []string{""}},
		{name: "content type", method: "POST", path: cartPath, ctype: "application/xml", body: `<cart/>`, status: 415, want: []string{"header Content-Type"}},
		{name: "header parameter", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": []}`, headers: []string{"12"}, status: 400, want: []string{"header X-Request-Priority"}},
		{name: "query parameter", method: "GET", path: cartPath + "?limit=0", status: 400, want: []string{"query limit"}},
		// Input that could say two things is refused: a backend may read the other one.
		{name: "a property given twice", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": [{"sku": "A", "quantity": 0, "quantity": 1}]}`, status: 400, want: []string{"/items/0/quantity"}},
		{name: "a header parameter given twice", method: "POST", path: cartPath, ctype: "application/json", body: `{"items": []}`, headers: []string{"1", "12"}, status: 400, want: []string{"header X-Request-Priority"}},
		{name: "path parameter", method: "GET", path: "/shop/carts/42/items", status: 400, want: []string{"path cart"}},
	}
	for _, version := range []string{"3.0.3", "3.1.0"} {
		d, err := parse(fmt.Appendf(nil, cartsDoc, version))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(version+"/"+c.name, func(t *testing.T) {
				op, err := d.operation(opKey{method: c.method, path: "/{cart}/items", template: "/shop/carts/{cart}/items"})
				if err != nil {
					t.Fatal(err)
				}
				var headers [][2]string
				for _, v := range c.headers {
					headers = append(headers, [2]string{"X-Request-Priority", v})
				}
				out := checkRequest(t, op, c.method, c.path, c.ctype, c.body, headers)
				got := places(out.Problems)
				for _, p := range out.Problems {
					if strings.Contains(p.Detail, "Schema:") || p.Detail == "" {
						t.Errorf("problem %+v: want a one-line detail", p)
					}
				}
				slices.Sort(got)
				got = slices.Compact(got)
				if out.Status != c.status || !slices.Equal(got, c.want) {
					t.Errorf("%d %v (%+v), want %d %v", out.Status, got, out.Problems, c.status, c.want)
				}
			})
		}
	}
}

// A route naming a description that has not arrived waits for the control plane's next set,
// and gives up when its time is out: the request is then failed by Envoy, never let through.
func TestSchemasWaitForTheDescription(t *testing.T) {
	s := NewSchemas()
	doc := fmt.Appendf(nil, cartsDoc, "3.1.0")
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := s.Set(map[string][]byte{"h1": doc}); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.get(ctx, "h1"); err != nil {
		t.Fatalf("waited for h1: %v", err)
	}
	// The set after keeps the one before: an Envoy may still route by it.
	if err := s.Set(map[string][]byte{"h2": doc}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get(ctx, "h1"); err != nil {
		t.Errorf("h1, one set ago: %v", err)
	}
	if err := s.Set(map[string][]byte{"h2": doc}); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := s.get(short, "h1"); err == nil {
		t.Error("h1, two sets ago: still served")
	}
	// A description that does not parse refuses the whole set; the live one stays.
	if err := s.Set(map[string][]byte{"h3": []byte("openapi: [")}); err == nil {
		t.Error("a broken description was accepted")
	}
	if _, err := s.get(ctx, "h2"); err != nil {
		t.Errorf("h2 after a refused set: %v", err)
	}
}

// What the first review found: cycles in schemas, readOnly under lists, recursion and
// additionalProperties, and what kin-openapi reads past (a query that does not parse, a
// parameter given twice, a body where none is taken).
const petsDoc = `openapi: 3.1.0
info: {title: Pets, version: 1.0.0}
paths:
  /pets:
    get:
      parameters: [{name: sort, in: query, schema: {type: string, enum: [name, date]}}]
      responses: {"200": {description: ok}}
    post:
      requestBody: {content: {application/json: {schema: {$ref: "#/components/schemas/Cat"}}}}
      responses: {"201": {description: ok}}
  /search:
    get:
      parameters:
        - {name: q, in: query, schema: {type: string, not: {enum: [admin]}}}
        - {name: n, in: query, schema: {type: integer, maximum: 50, not: {enum: [13]}}}
      responses: {"200": {description: ok}}
  /things/{id}:
    get:
      parameters: [{name: id, in: path, required: true, style: label, schema: {type: string, not: {enum: [admin]}}}]
      responses: {"200": {description: ok}}
  /modes:
    get:
      parameters: [{name: X-Mode, in: header, schema: {type: string, not: {enum: [""]}}}]
      responses: {"200": {description: ok}}
  /over:
    parameters:
      - {name: q, in: query, schema: {type: string, not: {enum: [admin]}}}
      - {name: tag, in: query, schema: {type: string}}
      - {name: X-Trace, in: header, schema: {type: string}}
    get:
      parameters:
        - {name: q, in: query, schema: {type: string}}
        - {name: tag, in: query, schema: {type: array, items: {type: string}}}
        - {name: X-Trace, in: header, schema: {type: array, items: {type: string}}}
      responses: {"200": {description: ok}}
  /categories:
    post:
      requestBody: {content: {application/json: {schema: {$ref: "#/components/schemas/Category"}}}}
      responses: {"201": {description: ok}}
  /tags:
    post:
      requestBody: {content: {application/json: {schema: {type: object, additionalProperties: {$ref: "#/components/schemas/Tag"}}}}}
      responses: {"201": {description: ok}}
components:
  schemas:
    Pet:
      type: object
      properties: {id: {type: string, readOnly: true}, petType: {type: string}}
      oneOf: [{$ref: "#/components/schemas/Cat"}, {$ref: "#/components/schemas/Dog"}]
    Cat: {allOf: [{$ref: "#/components/schemas/Pet"}]}
    Dog: {allOf: [{$ref: "#/components/schemas/Pet"}]}
    Category:
      type: object
      properties: {id: {type: string, readOnly: true}, children: {type: array, items: {$ref: "#/components/schemas/Category"}}}
    Tag:
      type: object
      properties: {id: {type: string, readOnly: true}, name: {type: string}}
`

func TestCheckHardCases(t *testing.T) {
	d, err := parse([]byte(petsDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, method, path, template, ctype, body string // ctype: application/json where there is a body
		headers                                   [][2]string
		status                                    int
		want                                      string
	}{
		{name: "a schema cycle (allOf and oneOf)", method: "POST", path: "/pets", body: `{"petType": "cat", "id": "x"}`, status: 400, want: "/id"},
		{name: "readOnly down a recursive list", method: "POST", path: "/categories", body: `{"children": [{"id": "forged"}]}`, status: 400, want: "/children/0/id"},
		{name: "readOnly under additionalProperties", method: "POST", path: "/tags", body: `{"k": {"id": "forged"}}`, status: 400, want: "/k/id"},
		{name: "a query with a semicolon", method: "GET", path: "/pets?sort=bogus;x", status: 400, want: "query "},
		{name: "a query with a bad escape", method: "GET", path: "/pets?sort=%zzbogus", status: 400, want: "query "},
		{name: "a parameter given twice", method: "GET", path: "/pets?sort=name&sort=bogus", status: 400, want: "query sort"},
		{name: "a body where none is taken", method: "GET", path: "/pets", body: `{"a":1}`, status: 400},
		{name: "valid", method: "GET", path: "/pets?sort=date"},
		// kin-openapi cannot decode a parameter whose schema has "not": it refused them all.
		{name: "a parameter outside its not", method: "GET", path: "/search?q=cat&n=7"},
		{name: "a parameter its not excludes", method: "GET", path: "/search?q=admin", status: 400, want: "query q"},
		{name: "an integer its not excludes", method: "GET", path: "/search?n=13", status: 400, want: "query n"},
		{name: "the rest of a not schema still holds", method: "GET", path: "/search?n=51", status: 400, want: "query n"},
		// What review found the first versions of the ambiguity checks let by, or refused wrongly.
		{name: "a duplicate behind a content type with a bad parameter", method: "POST", path: "/tags", ctype: "application/json; charset",
			body: `{"k": {"name": "a", "name": "b"}}`, status: 400, want: "/k/name"},
		{name: "a duplicate behind a content type in capitals", method: "POST", path: "/tags", ctype: "Application/JSON",
			body: `{"k": {"name": "a", "name": "b"}}`, status: 400, want: "/k/name"},
		{name: "a duplicate after invalid UTF-8", method: "POST", path: "/tags", ctype: "application/json",
			body: "{\"k\": {\"name\": \"a\xff\", \"name\": \"b\"}}", status: 400, want: "/k/name"},
		{name: "a duplicate after a lone surrogate", method: "POST", path: "/tags", ctype: "application/json",
			body: `{"k": {"name": "a\ud800", "name": "b"}}`, status: 400, want: "/k/name"},
		{name: "a name in two cases (one field to a Go backend)", method: "POST", path: "/tags",
			body: `{"k": {"name": "a", "Name": "b"}}`, status: 400, want: "/k/Name"},
		{name: "a name in two cases, Kelvin sign", method: "POST", path: "/tags",
			body: `{"kk": 1, "\u212Ak": 2}`, status: 400, want: "/\u212ak"},
		{name: "the same name in two objects", method: "POST", path: "/tags", body: `{"k": {"name": "a"}, "j": {"name": "b"}}`},
		{name: "not on a label-style path parameter", method: "GET", path: "/things/.admin", template: "/things/{id}", status: 400, want: "path id"},
		{name: "not on an empty header", method: "GET", path: "/modes", headers: [][2]string{{"X-Mode", ""}}, status: 400, want: "header X-Mode"},
		{name: "a header outside its not", method: "GET", path: "/modes", headers: [][2]string{{"X-Mode", "fast"}}},
		{name: "the operation's parameter replaces the path's (not)", method: "GET", path: "/over?q=admin"},
		{name: "the operation's parameter replaces the path's (a list)", method: "GET", path: "/over?tag=a&tag=b"},
		{name: "the operation's header replaces the path's (a list)", method: "GET", path: "/over", headers: [][2]string{{"X-Trace", "a"}, {"X-Trace", "b"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, _, _ := strings.Cut(c.path, "?")
			tmpl := c.template
			if tmpl == "" {
				tmpl = path
			}
			op, err := d.operation(opKey{method: c.method, path: tmpl, template: tmpl})
			if err != nil {
				t.Fatal(err)
			}
			ctype := c.ctype
			if ctype == "" && c.body != "" {
				ctype = "application/json"
			}
			out := checkRequest(t, op, c.method, c.path, ctype, c.body, c.headers)
			got := places(out.Problems)
			if out.Status != c.status || c.status != 0 && !slices.Contains(got, c.want) {
				t.Errorf("%d %v (%+v), want %d with %q", out.Status, got, out.Problems, c.status, c.want)
			}
		})
	}
}

// checkRequest checks, against op, a request of method to path (with its query) with the
// Content-Type ctype (none if empty), the headers in order, and body (none if empty).
func checkRequest(t *testing.T, op *operation, method, path, ctype, body string, headers [][2]string) Outcome {
	t.Helper()
	req, _ := http.NewRequest(method, "http://gw"+path, nil)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	out, err := op.check(context.Background(), req, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// places names where each problem is: "in name" for a parameter, else the body's pointer.
func places(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		if p.In != "" {
			out = append(out, p.In+" "+p.Name)
		} else {
			out = append(out, p.Pointer)
		}
	}
	return out
}
