package compiler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/specgate/specgate/compiler/ir"
)

// validates reports whether a scanned spec asks for request validation anywhere
// (x-specgate validate: request, on the service or an operation). The scan keeps every
// x-specgate whole.
func validates(root map[string]any) bool {
	asks := func(v any) bool {
		ext, _ := v.(map[string]any)
		return ext["validate"] == "request"
	}
	if asks(root[extKey]) {
		return true
	}
	paths, _ := root["paths"].(map[string]any)
	for _, item := range paths {
		im, _ := item.(map[string]any)
		for k, op := range im {
			if om, ok := op.(map[string]any); ok && operationKeys[k] && asks(om[extKey]) {
				return true
			}
		}
	}
	return false
}

// validationSchema loads a spec file whole, as specgate validate reads it: one JSON document,
// the other files' $refs brought inside it, without x-specgate (gateway policy is not the
// processor's, and a new timeout must not make it load the description again).
func validationSchema(loader *openapi3.Loader, data []byte, path string) (*ir.Schema, error) {
	doc, err := loader.LoadFromDataWithPath(data, &url.URL{Path: path})
	if err != nil {
		return nil, fmt.Errorf("the description cannot be read whole for specgate validate: %v", err)
	}
	doc.InternalizeRefs(context.Background(), nil)
	delete(doc.Extensions, extKey)
	for _, item := range doc.Paths.Map() {
		delete(item.Extensions, extKey)
		for _, op := range item.Operations() {
			delete(op.Extensions, extKey)
		}
	}
	b, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("the description cannot be written as JSON for specgate validate: %v", err)
	}
	sum := sha256.Sum256(b)
	return &ir.Schema{Hash: hex.EncodeToString(sum[:16]), Doc: b}, nil
}
