package envoy

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
)

const adminSpec = `openapi: 3.0.3
info: {title: Admin, version: 1.0.0}
servers: [{url: "http://127.0.0.1:{{PORT}}/admin"}]
x-specgate: {service: admin, backend: "http://127.0.0.1:{{PORT}}", basePath: /admin}
security: []
paths:
  /users/{id}:
    get: {operationId: getUser, parameters: [{name: id, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
    delete: {operationId: deleteUser, x-specgate: {exposure: internal}, parameters: [{name: id, in: path, required: true, schema: {type: string}}], responses: {"204": {description: gone}}}
`

// Each listener serves the description of what it serves, from Envoy itself: a valid OpenAPI
// 3.1 document whose every operation routes, with nothing of the gateway's own in it.
func TestPublishedDescription(t *testing.T) {
	t.Parallel()
	b := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec, "admin.yaml": adminSpec},
		Vars: map[string]string{"PORT": b.Port(), "LIMIT": "100"}, NoRedis: true,
		Configure: func(c *config.Gateway) {
			c.APIDescription = config.APIDescription{JSON: "/openapi.json", YAML: "/openapi.yaml", Title: "API"}
		}})
	get := func(url string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, l := range []struct {
		base     string
		internal bool
	}{{s.Public, false}, {s.Internal, true}} {
		resp, body := get(l.base + "/openapi.json")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s/openapi.json: %d %q", l.base, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		doc, err := openapi3.NewLoader().LoadFromData(body)
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.Validate(context.Background()); err != nil || doc.OpenAPI != "3.1.0" {
			t.Errorf("%s: openapi %s, not a valid document: %v", l.base, doc.OpenAPI, err)
		}
		for _, leak := range []string{"x-specgate", "127.0.0.1", "servers"} {
			if strings.Contains(string(body), leak) {
				t.Errorf("%s/openapi.json holds %q", l.base, leak)
			}
		}
		// Every operation it lists routes: no 404, no 405 (401 where a token is needed).
		hasDelete := false
		for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
			for method := range doc.Paths.Value(path).Operations() {
				hasDelete = hasDelete || method == "DELETE"
				req, _ := http.NewRequest(method, l.base+param.ReplaceAllString(path, "x"), nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == 404 || resp.StatusCode == 405 {
					t.Errorf("%s %s%s, listed in the description: %d", method, l.base, path, resp.StatusCode)
				}
			}
		}
		if hasDelete != l.internal {
			t.Errorf("%s: the internal DELETE listed %v, want %v", l.base, hasDelete, l.internal)
		}
		// The YAML is the same document.
		resp, y := get(l.base + "/openapi.yaml")
		j, err := yaml.YAMLToJSON(y)
		var a, c any
		if err == nil {
			err = json.Unmarshal(j, &a)
		}
		_ = json.Unmarshal(body, &c)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || err != nil || !jsonEqual(a, c) {
			t.Errorf("%s/openapi.yaml: %d %q %v, or not the JSON's document", l.base, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
	}
	// The description is Envoy's: no backend saw those requests, and a POST is not one.
	if resp, _ := get(s.Public + "/openapi.json?x=1"); resp.StatusCode != 200 {
		t.Errorf("with a query: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", s.Public+"/openapi.json", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("POST /openapi.json: %d, want 404", resp.StatusCode)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
