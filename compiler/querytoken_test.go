package compiler_test

import (
	"testing"

	"github.com/specgate/specgate/compiler"
)

// An operation declares an access_token query parameter inline, through a $ref to
// components.parameters (whose schema may name what the gateway never reads), or on its path
// item; the others do not, whatever their other parameters.
func TestQueryTokenDeclarations(t *testing.T) {
	spec := `openapi: 3.1.0
info: {title: A, version: 1.0.0}
x-specgate: {service: a, backend: "http://a.shop.svc.cluster.local:8080", basePath: /a}
security: []
components:
  schemas:
    Token: {type: string, minLength: 20}
  parameters:
    Tok: {name: access_token, in: query, schema: {$ref: "#/components/schemas/Token"}}
    Page: {name: page, in: query, schema: {type: integer}}
    HeaderTok: {name: access_token, in: header, schema: {type: string}}
paths:
  /inline:
    get: {operationId: inline, parameters: [{name: access_token, in: query, schema: {type: string}}], responses: {"200": {description: ok}}}
  /ref:
    get: {operationId: ref, parameters: [{$ref: "#/components/parameters/Tok"}], responses: {"200": {description: ok}}}
  /item:
    parameters: [{$ref: "#/components/parameters/Tok"}]
    get: {operationId: item, responses: {"200": {description: ok}}}
  /none:
    get: {operationId: none, parameters: [{$ref: "#/components/parameters/Page"}, {$ref: "#/components/parameters/HeaderTok"}], responses: {"200": {description: ok}}}
`
	gw, diags := compiler.CompileFiles("", map[string][]byte{"a.yaml": []byte(spec)}, compiler.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"a.inline": true, "a.ref": true, "a.item": true, "a.none": false}
	for _, op := range gw.Services[0].Operations {
		if op.QueryToken != want[op.ID] {
			t.Errorf("%s: queryToken %v, want %v", op.ID, op.QueryToken, want[op.ID])
		}
	}
}
