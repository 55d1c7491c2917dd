package envoy_test

import (
	"net/http"
	"testing"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
)

const pathFormsSpec = `openapi: 3.1.0
info: {title: Shop, version: 1.0.0}
x-specgate: {service: shop, backend: "http://127.0.0.1:{{PORT}}", basePath: /shop}
security: [{oauth: [admin]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {admin: a}}}}
paths:
  /items/admin:
    get: {operationId: admin, responses: {"200": {description: ok}}}
  /items/secret:
    get: {operationId: secret, security: [], x-specgate: {exposure: internal}, responses: {"200": {description: ok}}}
  /items/{id}:
    get: {operationId: getItem, security: [], parameters: [{name: id, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
`

// A request that backend frameworks would route to a stricter operation never reaches it
// through a weaker sibling template: beside the protected /shop/items/admin and the internal
// /shop/items/secret, the anonymous /shop/items/{id} does not take their other forms (Spring's
// ;matrix, ASP.NET's any case, Rails' .json, a trailing %20). Through real Envoy and authz.
func TestPathFormsDoNotReachStricterOperations(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "semicolons refused", true: "semicolons allowed"}[allow], func(t *testing.T) {
			t.Parallel()
			b := e2e.NewBackend(t, "shop")
			s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": pathFormsSpec}, Vars: map[string]string{"PORT": b.Port()},
				Configure: func(c *config.Gateway) { c.Listeners.AllowSemicolons = allow }})
			semicolon := map[bool]int{false: 400, true: 404}[allow]
			for _, tc := range []struct {
				base, path string
				want       int
			}{
				{s.Public, "/shop/items/42", 200},
				{s.Public, "/shop/items/admin", 401},
				{s.Public, "/shop/items/ADMIN", 404},
				{s.Public, "/shop/items/Admin", 404},
				{s.Public, "/shop/items/admin.json", 404},
				{s.Public, "/shop/items/ADMIN.JSON", 404},
				{s.Public, "/shop/items/admin%20", 404},
				{s.Public, "/shop/items/admin;x=1", semicolon},
				{s.Public, "/shop/items/admin%3Bx=1", semicolon},
				{s.Public, "/shop/items/secret", 404},
				{s.Public, "/shop/items/Secret", 404},
				{s.Public, "/shop/items/secret;", semicolon},
				{s.Internal, "/shop/items/secret", 200},
				{s.Internal, "/shop/items/SECRET", 404},
				{s.Internal, "/shop/items/secret.json", 404},
				{s.Internal, "/shop/items/7", 200},
			} {
				hits := b.Hits()
				resp, err := http.Get(tc.base + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("GET %s on %s: %d, want %d", tc.path, map[bool]string{true: "public", false: "internal"}[tc.base == s.Public], resp.StatusCode, tc.want)
				}
				if reached := b.Hits() > hits; reached != (tc.want == 200) {
					t.Errorf("GET %s: reached the backend %v", tc.path, reached)
				}
			}
			// With semicolons allowed, other paths may hold them.
			if allow {
				if resp, err := http.Get(s.Public + "/shop/items/42;v=1"); err != nil || resp.StatusCode != 200 {
					t.Errorf("GET /shop/items/42;v=1 with semicolons allowed: %v %v", resp.StatusCode, err)
				}
			}
		})
	}
}
