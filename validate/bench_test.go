package validate

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/specgate/specgate/test/harness/specgen"
)

// orderDoc is the description of make bench's validated POST (test/bench/gateway).
const orderDoc = `openapi: %s
info: {title: Orders, version: 1.0.0}
paths:
  /{shop}/orders:
    post:
      parameters:
        - {name: shop, in: path, required: true, schema: {type: string, format: uuid}}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
      responses: {"201": {description: created}}
components:
  schemas:
` + specgen.OrderSchemas

// BenchmarkCheck2KB is the processor's own cost of one validated POST with a 2 KB JSON body:
// its path parameter, the body against the schema (OpenAPI 3.0: kin-openapi; 3.1: the
// compiled JSON Schema), the readOnly walk.
func BenchmarkCheck2KB(b *testing.B) {
	body := specgen.Order2KB()
	if len(body) < 1800 || len(body) > 2300 {
		b.Fatalf("body is %d bytes, want about 2 KB", len(body))
	}
	for _, version := range []string{"3.0.3", "3.1.0"} {
		b.Run("openapi-"+version, func(b *testing.B) {
			d, err := parse(fmt.Appendf(nil, orderDoc, version))
			if err != nil {
				b.Fatal(err)
			}
			op, err := d.operation(opKey{method: "POST", path: "/{shop}/orders", template: "/orders/{shop}/orders"})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", "http://gw/orders/7b0e7a52-4f0c-4c43-9e0e-1f1f0f7d2a11/orders", nil)
				req.Header.Set("Content-Type", "application/json")
				out, err := op.check(ctx, req, body)
				if err != nil || out.Status != 0 {
					b.Fatalf("%v %+v", err, out)
				}
			}
		})
	}
}
