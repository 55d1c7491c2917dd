package specgen

import (
	"encoding/json"
	"fmt"
)

// OrderSchemas are the components.schemas of an order in a commerce API (a customer, an
// address, line items), as YAML indented for a spec's components: schemas: block. make
// bench's validated POST and validate's benchmark check Order2KB against Order.
const OrderSchemas = `    Money:
      type: object
      additionalProperties: false
      required: [amount, currency]
      properties:
        amount: {type: integer, minimum: 0}
        currency: {type: string, pattern: "^[A-Z]{3}$"}
    Line:
      type: object
      additionalProperties: false
      required: [sku, quantity, unitPrice]
      properties:
        sku: {type: string, minLength: 1, maxLength: 40}
        quantity: {type: integer, minimum: 1, maximum: 1000}
        unitPrice: {$ref: "#/components/schemas/Money"}
        giftWrap: {type: boolean}
    Order:
      type: object
      additionalProperties: false
      required: [customer, shipping, lines]
      properties:
        id: {type: string, readOnly: true}
        customer:
          type: object
          required: [email]
          properties:
            email: {type: string, format: email}
            name: {type: string, maxLength: 200}
        shipping:
          type: object
          required: [line1, city, postalCode, country]
          properties:
            line1: {type: string}
            city: {type: string}
            postalCode: {type: string}
            country: {type: string, enum: [DE, FR, GB, NL, US]}
        lines: {type: array, minItems: 1, maxItems: 100, items: {$ref: "#/components/schemas/Line"}}
        placedAt: {type: string, format: date-time}
        note: {type: string, maxLength: 500}
`

// Order2KB is a valid Order of about 2 KB: 16 line items.
func Order2KB() []byte {
	lines := make([]map[string]any, 16)
	for i := range lines {
		lines[i] = map[string]any{"sku": fmt.Sprintf("SKU-%06d-BLUE", i), "quantity": i + 1,
			"unitPrice": map[string]any{"amount": 1999 + i, "currency": "EUR"}, "giftWrap": i%3 == 0}
	}
	b, _ := json.Marshal(map[string]any{
		"customer": map[string]any{"email": "ada@shop.example.com", "name": "Ada Lovelace"},
		"shipping": map[string]any{"line1": "12 Market Street", "city": "Amsterdam", "postalCode": "1012 AB", "country": "NL"},
		"lines":    lines, "placedAt": "2026-12-07T10:00:00Z", "note": "Leave at the door, please.",
	})
	return b
}
