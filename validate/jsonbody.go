package validate

import (
	"bytes"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"sigs.k8s.io/yaml"
)

// OpenAPI 3.1 JSON bodies are checked with a JSON Schema 2020-12 validator compiled once per
// operation. kin-openapi compiles one for every request (and then, for a schema with $refs,
// checks with its 3.0 validator anyway): BenchmarkCheck2KB took 0.53–0.61 ms a request that
// way, 0.15 ms this way.

// docURL names the description inside its compiler; $refs resolve within it.
const docURL = "file:///specgate/description.json"

// newCompiler is a JSON Schema compiler holding the description doc (JSON or YAML) as one
// resource: formats are asserted, as kin-openapi's options do.
func newCompiler(doc []byte) (*jsonschema.Compiler, error) {
	j := doc // the control plane sends JSON; YAML comes from tests
	if t := bytes.TrimSpace(doc); len(t) == 0 || t[0] != '{' {
		var err error
		if j, err = yaml.YAMLToJSON(doc); err != nil {
			return nil, err
		}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, v); err != nil {
		return nil, err
	}
	return c, nil
}

// compileJSONBody compiles the application/json schema of operation o (method on path) of a
// 3.1 description; nil when it has none or it does not compile (kin-openapi then checks).
func compileJSONBody(c *jsonschema.Compiler, o *openapi3.Operation, method, path string) *jsonschema.Schema {
	rb := o.RequestBody
	if c == nil || rb == nil || rb.Value == nil || rb.Value.Content.Get("application/json") == nil {
		return nil
	}
	loc := pointer([]string{"paths", path, strings.ToLower(method), "requestBody"})
	if strings.HasPrefix(rb.Ref, "#/") {
		loc = rb.Ref[1:] // internalized: every $ref is one of the document
	}
	s, err := c.Compile(docURL + "#" + loc + "/content/application~1json/schema")
	if err != nil {
		return nil
	}
	return s
}

// isJSON reports whether a Content-Type is application/json (parameters aside).
func isJSON(ctype string) bool { return mediaType(ctype) == "application/json" }

// isJSONFamily reports whether a Content-Type is JSON: application/json or a +json type.
func isJSONFamily(ctype string) bool {
	mt := mediaType(ctype)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// mediaType is a Content-Type's type, read as leniently as kin-openapi reads it (up to the
// first ";", in lower case): a type that a strict parser refuses for a bad parameter must
// still get every check that kin-openapi's JSON decoding gets.
func mediaType(ctype string) string {
	mt, _, _ := strings.Cut(ctype, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

var printer = message.NewPrinter(language.English)

// checkJSON checks a JSON body against op.jsonBody, and its readOnly properties.
func (op *operation) checkJSON(body []byte) []Problem {
	if len(body) == 0 {
		if op.route.Operation.RequestBody.Value.Required {
			return []Problem{{Detail: "is required"}}
		}
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return []Problem{{Detail: "cannot be read: " + err.Error()}}
	}
	var out []Problem
	if err := op.jsonBody.Validate(v); err != nil {
		if ve, ok := err.(*jsonschema.ValidationError); ok {
			for _, leaf := range validationLeaves(ve) {
				if ps := kindProblems(leaf); ps != nil {
					out = append(out, ps...)
					continue
				}
				out = append(out, Problem{Pointer: pointer(leaf.InstanceLocation), Detail: leaf.ErrorKind.LocalizedString(printer)})
			}
		} else {
			out = append(out, Problem{Detail: err.Error()})
		}
	}
	if op.readOnly != nil {
		readOnlySet(op.readOnly, op.underReadOnly, v, "", &out)
	}
	return out
}

func validationLeaves(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return []*jsonschema.ValidationError{ve}
	}
	var out []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		out = append(out, validationLeaves(c)...)
	}
	return out
}

// kindProblems names a property that additionalProperties forbids, or that is required and
// missing, by its own pointer, one problem each; nil for the other rules.
func kindProblems(ve *jsonschema.ValidationError) []Problem {
	var names []string
	var detail string
	switch k := ve.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		names, detail = k.Properties, "is not allowed (additionalProperties)"
	case *kind.Required:
		names, detail = k.Missing, "is required"
	}
	var out []Problem
	at := pointer(ve.InstanceLocation)
	for _, n := range names {
		out = append(out, Problem{Pointer: at + pointer([]string{n}), Detail: detail})
	}
	return out
}
