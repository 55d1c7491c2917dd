package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// description is one service's OpenAPI description, with the operations requests were
// checked against so far, each prepared once.
type description struct {
	doc *openapi3.T
	mu  sync.Mutex
	ops map[opKey]*operation
}

// opKey names an operation as a route does: its method, its key in the description's paths,
// and the gateway path template its route matches.
type opKey struct{ method, path, template string }

type operation struct {
	route  *routers.Route
	match  *regexp.Regexp // the gateway template, one group per parameter
	params []string       // the parameters' names, in the groups' order
	// readOnly is the JSON body's schema when a property under it is readOnly: the JSON
	// Schema 2020-12 validator (OpenAPI 3.1) does not refuse those in requests.
	readOnly *openapi3.Schema
}

var templateParam = regexp.MustCompile(`\{([^{}]+)\}`)

func (d *description) operation(k opKey) (*operation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if op, ok := d.ops[k]; ok {
		return op, nil
	}
	item := d.doc.Paths.Value(k.path)
	if item == nil {
		return nil, fmt.Errorf("path %s is not in the description", k.path)
	}
	o := item.GetOperation(k.method)
	if o == nil {
		return nil, fmt.Errorf("%s %s is not in the description", k.method, k.path)
	}
	// Envoy matched the route, so the request path has the template's shape: the
	// parameters are what stands where the template has {name}.
	var expr strings.Builder
	var params []string
	last := 0
	for _, m := range templateParam.FindAllStringSubmatchIndex(k.template, -1) {
		expr.WriteString(regexp.QuoteMeta(k.template[last:m[0]]))
		expr.WriteString("([^/]*)")
		params = append(params, k.template[m[2]:m[3]])
		last = m[1]
	}
	expr.WriteString(regexp.QuoteMeta(k.template[last:]))
	match, err := regexp.Compile("^" + expr.String() + "$")
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", k.template, err)
	}
	op := &operation{
		route:  &routers.Route{Spec: d.doc, Path: k.path, PathItem: item, Method: k.method, Operation: o},
		match:  match,
		params: params,
	}
	if rb := o.RequestBody; rb != nil && rb.Value != nil && d.doc.IsOpenAPI31OrLater() {
		if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil && hasReadOnly(mt.Schema.Value, map[*openapi3.Schema]bool{}) {
			op.readOnly = mt.Schema.Value
		}
	}
	d.ops[k] = op
	return op, nil
}

// Outcome is what a check found: nothing (Status 0: the request goes on), or the answer.
type Outcome struct {
	Status   int // 400 or 415
	Problems []Problem
}

// Problem is one rule a request breaks: in its body at Pointer (RFC 6901; "" is the body as a
// whole), or in parameter Name of In (path, query, header, cookie).
type Problem struct {
	Pointer string `json:"pointer,omitempty"`
	In      string `json:"in,omitempty"`
	Name    string `json:"name,omitempty"`
	Detail  string `json:"detail"`
}

// schemaOptions check formats (date-time, uuid, email among them) as well as types.
var schemaOptions = []openapi3.SchemaValidationOption{
	openapi3.EnableFormatValidation(),
	openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
	openapi3.WithStringFormatValidator("email", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail)),
}

var filterOptions = &openapi3filter.Options{
	MultiError:          true,
	SkipSettingDefaults: true,
	// authz decided already; the description's security is its business.
	AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
	SchemaValidationOptions: schemaOptions,
}

// check validates req (its body read into body) against op. An error means the request
// could not be checked.
func (op *operation) check(ctx context.Context, req *http.Request, body []byte) (Outcome, error) {
	path := req.URL.EscapedPath()
	m := op.match.FindStringSubmatch(path)
	if m == nil {
		return Outcome{}, fmt.Errorf("path %s does not match the route's template", path)
	}
	params := make(map[string]string, len(op.params))
	for i, name := range op.params {
		v, err := url.PathUnescape(m[i+1])
		if err != nil {
			v = m[i+1]
		}
		params[name] = v
	}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	err := openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      op.route,
		Options:    filterOptions,
	})
	if err == nil {
		return op.readOnlyOutcome(req.Header.Get("Content-Type"), body), nil
	}
	return op.outcome(err), nil
}

// readOnlyOutcome refuses a JSON body that sets readOnly properties, where kin-openapi does
// not (op.readOnly).
func (op *operation) readOnlyOutcome(ctype string, body []byte) Outcome {
	if op.readOnly == nil || len(body) == 0 || !strings.Contains(ctype, "json") {
		return Outcome{}
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return Outcome{}
	}
	var ps []Problem
	readOnlySet(op.readOnly, v, "", &ps, 0)
	if len(ps) == 0 {
		return Outcome{}
	}
	return Outcome{Status: http.StatusBadRequest, Problems: ps}
}

// outcome is the answer to a request that openapi3filter refused with err.
func (op *operation) outcome(err error) Outcome {
	out := Outcome{Status: http.StatusBadRequest}
	for _, e := range flatten(err) {
		var re *openapi3filter.RequestError
		if !errors.As(e, &re) {
			out.Problems = append(out.Problems, Problem{Detail: e.Error()})
			continue
		}
		switch {
		case re.Parameter != nil:
			for _, d := range details(re.Err, re.Reason) {
				out.Problems = append(out.Problems, Problem{In: re.Parameter.In, Name: re.Parameter.Name, Detail: d.Detail})
			}
		case strings.HasPrefix(re.Reason, "header Content-Type has unexpected value"):
			out.Status = http.StatusUnsupportedMediaType
			out.Problems = append(out.Problems, Problem{In: "header", Name: "Content-Type", Detail: "the operation takes " + mediaTypes(op.route.Operation)})
		case re.RequestBody != nil:
			out.Problems = append(out.Problems, details(re.Err, re.Reason)...)
		default:
			out.Problems = append(out.Problems, Problem{Detail: re.Reason})
		}
	}
	return out
}

// details turns a body or parameter error into problems: each schema rule broken, at its
// place.
func details(err error, reason string) []Problem {
	var out []Problem
	for _, e := range flatten(err) {
		var se *openapi3.SchemaError
		var pe *openapi3filter.ParseError
		switch {
		case errors.As(e, &se):
			for _, leaf := range leaves(se) {
				out = append(out, schemaProblems(leaf)...)
			}
		case errors.As(e, &pe):
			out = append(out, Problem{Detail: "cannot be read: " + pe.Reason})
		case errors.Is(e, openapi3filter.ErrInvalidRequired):
			out = append(out, Problem{Detail: "is required"})
		default:
			out = append(out, Problem{Detail: reason})
		}
	}
	if len(out) == 0 {
		out = append(out, Problem{Detail: reason})
	}
	return out
}

// hasReadOnly reports whether s or a schema under it marks a property readOnly.
func hasReadOnly(s *openapi3.Schema, seen map[*openapi3.Schema]bool) bool {
	if s == nil || seen[s] {
		return false
	}
	seen[s] = true
	for _, p := range s.Properties {
		if p.Value != nil && (p.Value.ReadOnly || hasReadOnly(p.Value, seen)) {
			return true
		}
	}
	for _, sub := range subschemas(s) {
		if hasReadOnly(sub, seen) {
			return true
		}
	}
	return false
}

func subschemas(s *openapi3.Schema) []*openapi3.Schema {
	var out []*openapi3.Schema
	for _, refs := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range refs {
			out = append(out, r.Value)
		}
	}
	if s.Items != nil {
		out = append(out, s.Items.Value)
	}
	return out
}

// readOnlySet adds a problem for each readOnly property that v, a request body at pointer
// at, sets (OpenAPI: readOnly properties are not sent in requests).
func readOnlySet(s *openapi3.Schema, v any, at string, out *[]Problem, depth int) {
	if s == nil || depth > 64 {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for name, val := range x {
			p := s.Properties[name]
			if p == nil || p.Value == nil {
				continue
			}
			if p.Value.ReadOnly {
				*out = append(*out, Problem{Pointer: at + pointer([]string{name}), Detail: "is read-only: not accepted in a request"})
				continue
			}
			readOnlySet(p.Value, val, at+pointer([]string{name}), out, depth+1)
		}
	case []any:
		if s.Items != nil {
			for i, val := range x {
				readOnlySet(s.Items.Value, val, fmt.Sprintf("%s/%d", at, i), out, depth+1)
			}
		}
		return
	}
	for _, r := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range r {
			readOnlySet(sub.Value, v, at, out, depth+1)
		}
	}
}

// leaves are the schema errors under se that name one rule each: the JSON Schema 2020-12
// validator (OpenAPI 3.1) reports a tree, whose root only says that validation failed.
func leaves(se *openapi3.SchemaError) []*openapi3.SchemaError {
	me, ok := errors.Unwrap(se.Origin).(openapi3.MultiError)
	if !ok {
		return []*openapi3.SchemaError{se}
	}
	var out []*openapi3.SchemaError
	for _, e := range me {
		var sub *openapi3.SchemaError
		if errors.As(e, &sub) {
			out = append(out, leaves(sub)...)
		}
	}
	if len(out) == 0 {
		return []*openapi3.SchemaError{se}
	}
	return out
}

var errorAt = regexp.MustCompile(`^error at "[^"]*": `)

// schemaProblems is one broken rule as problems: a property that additionalProperties
// forbids, or that is required and missing, is named by its own pointer, one problem each.
func schemaProblems(se *openapi3.SchemaError) []Problem {
	ptr := pointer(se.JSONPointer())
	var ve *jsonschema.ValidationError
	if errors.As(se, &ve) {
		var names []string
		var detail string
		switch k := ve.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			names, detail = k.Properties, "is not allowed (additionalProperties)"
		case *kind.Required:
			names, detail = k.Missing, "is required"
		}
		var out []Problem
		for _, n := range names {
			out = append(out, Problem{Pointer: ptr + pointer([]string{n}), Detail: detail})
		}
		if len(out) > 0 {
			return out
		}
	}
	if m := unsupported.FindStringSubmatch(se.Reason); m != nil && se.SchemaField == "properties" {
		if name, err := strconv.Unquote(m[1]); err == nil {
			return []Problem{{Pointer: ptr + pointer([]string{name}), Detail: "is not allowed (additionalProperties)"}}
		}
	}
	return []Problem{{Pointer: ptr, Detail: errorAt.ReplaceAllString(se.Reason, "")}}
}

// unsupported is how kin-openapi's own validator (OpenAPI 3.0, and some 3.1 schemas) names
// a property that additionalProperties forbids; the pointer is its object's.
var unsupported = regexp.MustCompile(`^property ("(?:[^"\\]|\\.)*") is unsupported$`)

// pointer is the RFC 6901 JSON pointer of a path.
func pointer(path []string) string {
	var b strings.Builder
	for _, p := range path {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// flatten lists the errors of kin-openapi's MultiErrors, keeping each RequestError whole
// (errors.As would look through it, into its own MultiError, and lose the parameter).
func flatten(err error) []error {
	me, ok := err.(openapi3.MultiError)
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range me {
		out = append(out, flatten(e)...)
	}
	return out
}

func mediaTypes(o *openapi3.Operation) string {
	if o.RequestBody == nil || o.RequestBody.Value == nil {
		return "no body"
	}
	var ts []string
	for t := range o.RequestBody.Value.Content {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return strings.Join(ts, ", ")
}
