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
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// description is one service's OpenAPI description, with the operations requests were
// checked against so far, each prepared once.
type description struct {
	doc      *openapi3.T
	compiler *jsonschema.Compiler // OpenAPI 3.1: the JSON bodies' schemas (jsonbody.go)
	mu       sync.Mutex
	ops      map[opKey]*operation
}

// opKey names an operation as a route does: its method, its key in the description's paths,
// and the gateway path template its route matches.
type opKey struct{ method, path, template string }

type operation struct {
	route  *routers.Route
	match  *regexp.Regexp // the gateway template, one group per parameter
	params []string       // the parameters' names, in the groups' order
	// jsonBody is the application/json body's schema, compiled (OpenAPI 3.1). readOnly is
	// that schema when a property under it is readOnly (JSON Schema 2020-12 does not refuse
	// those in requests), underReadOnly readOnlyUnder's memo of it.
	jsonBody      *jsonschema.Schema
	readOnly      *openapi3.Schema
	underReadOnly map[*openapi3.Schema]bool
	// queryParams and headerParams are its query and header parameters that take one value
	// (not a list).
	queryParams, headerParams []string
	// nots are its parameters of a primitive type whose schema has "not", which kin-openapi
	// cannot decode (it refuses every value): route holds them without it, checkNots the rest.
	nots []notParam
}

// notParam is a parameter whose "not" this package checks itself.
type notParam struct {
	in, name string
	typ      string           // string, integer, number or boolean
	not      *openapi3.Schema // what the value must not match
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
	op.jsonBody = compileJSONBody(d.compiler, o, k.method, k.path)
	effective := effectiveParams(item.Parameters, o.Parameters)
	op.splitNots(effective)
	for _, v := range effective {
		if v.Schema != nil && v.Schema.Value != nil && v.Schema.Value.Type.Is("array") {
			continue
		}
		switch v.In {
		case "query":
			op.queryParams = append(op.queryParams, v.Name)
		case "header":
			op.headerParams = append(op.headerParams, v.Name)
		}
	}
	if rb := o.RequestBody; rb != nil && rb.Value != nil && d.doc.IsOpenAPI31OrLater() {
		if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
			under := map[*openapi3.Schema]bool{}
			if readOnlyUnder(mt.Schema.Value, under) {
				op.readOnly, op.underReadOnly = mt.Schema.Value, under
			}
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

var paramsOptions = func() *openapi3filter.Options {
	o := *filterOptions
	o.ExcludeRequestBody = true
	return &o
}()

// check validates req (its body read into body) against op. An error means the request
// could not be checked.
func (op *operation) check(ctx context.Context, req *http.Request, body []byte) (Outcome, error) {
	path := req.URL.EscapedPath()
	m := op.match.FindStringSubmatch(path)
	if m == nil { // Envoy routed it here: a path the template reads otherwise
		return Outcome{Status: http.StatusBadRequest, Problems: []Problem{{In: "path", Detail: "does not match " + op.route.Path}}}, nil
	}
	params := make(map[string]string, len(op.params))
	for i, name := range op.params {
		v, err := url.PathUnescape(m[i+1])
		if err != nil {
			v = m[i+1]
		}
		params[name] = v
	}
	// What kin-openapi would read past: a query that does not parse (url.Query drops the pair
	// with a ";" or a bad escape, the backend may not), a parameter given twice that is not a
	// list (it checks the first, the backend may read the last), a JSON body naming a member
	// twice in one object (the validators read the last, a backend may read the first), a body
	// where none is taken.
	query, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return Outcome{Status: http.StatusBadRequest, Problems: []Problem{{In: "query", Detail: "cannot be read: " + err.Error()}}}, nil
	}
	var out Outcome
	for _, p := range op.queryParams {
		if len(query[p]) > 1 {
			out.Status = http.StatusBadRequest
			out.Problems = append(out.Problems, Problem{In: "query", Name: p, Detail: "is given more than once"})
		}
	}
	for _, p := range op.headerParams {
		if len(req.Header.Values(p)) > 1 {
			out.Status = http.StatusBadRequest
			out.Problems = append(out.Problems, Problem{In: "header", Name: p, Detail: "is given more than once"})
		}
	}
	if len(body) > 0 && isJSONFamily(req.Header.Get("Content-Type")) {
		if at, dup := duplicateName(body); dup {
			out.Status = http.StatusBadRequest
			out.Problems = append(out.Problems, Problem{Pointer: at, Detail: "is given more than once"})
		}
	}
	if op.route.Operation.RequestBody == nil && len(body) > 0 {
		out.Status = http.StatusBadRequest
		out.Problems = append(out.Problems, Problem{Detail: "the operation takes no body"})
	}
	if out.Status != 0 {
		return out, nil
	}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	if ps := op.checkNots(req, query, params); len(ps) > 0 {
		return Outcome{Status: http.StatusBadRequest, Problems: ps}, nil
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: op.route, Options: filterOptions}
	if op.jsonBody != nil && isJSON(req.Header.Get("Content-Type")) {
		in.Options = paramsOptions // the body: checkJSON
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			out = op.outcome(err)
		}
		if ps := op.checkJSON(body); len(ps) > 0 {
			out.Status = max(out.Status, http.StatusBadRequest)
			out.Problems = append(out.Problems, ps...)
		}
		return out, nil
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return op.outcome(err), nil
	}
	return op.readOnlyOutcome(req.Header.Get("Content-Type"), body), nil
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
	readOnlySet(op.readOnly, op.underReadOnly, v, "", &ps)
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

// readOnlyUnder records, for s and each schema under it, whether it or a schema under it marks
// a property readOnly: the walk of a body skips the subtrees where none is. A schema still
// being looked at (a cycle) counts as having one: skipping is only a saving.
func readOnlyUnder(s *openapi3.Schema, memo map[*openapi3.Schema]bool) bool {
	if s == nil {
		return false
	}
	if v, seen := memo[s]; seen {
		return v
	}
	memo[s] = true
	found := false
	for _, p := range s.Properties {
		if p.Value != nil && (p.Value.ReadOnly || readOnlyUnder(p.Value, memo)) {
			found = true
		}
	}
	for _, sub := range subschemas(s) {
		found = readOnlyUnder(sub, memo) || found
	}
	memo[s] = found
	return found
}

// subschemas are the schemas a value of s may also have to meet, or its items and
// additional properties.
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
	if ap := s.AdditionalProperties.Schema; ap != nil {
		out = append(out, ap.Value)
	}
	return out
}

// readOnlySet adds a problem for each readOnly property that v, a request body at pointer
// at, sets (OpenAPI: readOnly properties are not sent in requests). under is readOnlyUnder's;
// seen the schemas this value was already checked against (allOf cycles).
func readOnlySet(s *openapi3.Schema, under map[*openapi3.Schema]bool, v any, at string, out *[]Problem) {
	readOnlyAt(s, under, v, at, out, map[*openapi3.Schema]bool{})
}

func readOnlyAt(s *openapi3.Schema, under map[*openapi3.Schema]bool, v any, at string, out *[]Problem, seen map[*openapi3.Schema]bool) {
	if s == nil || !under[s] || seen[s] {
		return
	}
	seen[s] = true
	switch x := v.(type) {
	case map[string]any:
		for name, val := range x {
			p := s.Properties[name]
			if p == nil && s.AdditionalProperties.Schema != nil {
				p = s.AdditionalProperties.Schema
			}
			if p == nil || p.Value == nil {
				continue
			}
			ptr := at + pointer([]string{name})
			if p.Value.ReadOnly {
				if !slices.ContainsFunc(*out, func(q Problem) bool { return q.Pointer == ptr }) {
					*out = append(*out, Problem{Pointer: ptr, Detail: "is read-only: not accepted in a request"})
				}
				continue
			}
			readOnlyAt(p.Value, under, val, ptr, out, map[*openapi3.Schema]bool{})
		}
	case []any:
		if s.Items != nil {
			for i, val := range x {
				readOnlyAt(s.Items.Value, under, val, at+"/"+strconv.Itoa(i), out, map[*openapi3.Schema]bool{})
			}
		}
	}
	for _, r := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range r {
			readOnlyAt(sub.Value, under, v, at, out, seen)
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
		if ps := kindProblems(ve); ps != nil {
			return ps
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

// duplicateName finds a member name given twice in one object of the JSON body, and its
// pointer: given twice exactly, or in two spellings that differ in case only, which a Go
// backend (encoding/json matches names case-insensitively) reads as one. A body that is not
// JSON has none here: the check proper says what is wrong.
func duplicateName(body []byte) (pointer string, found bool) {
	d := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(d)
	// Invalid UTF-8 is read on, as encoding/json (the validators', a Go backend's) reads it,
	// mangled to U+FFFD: it must not end the search before a duplicate.
	d.Reset(bytes.NewBuffer(body), jsontext.AllowInvalidUTF8(true)) // a Buffer is read in place, not copied
	var names []map[string]bool                                     // per open object, its names folded (nil: an array)
	for {
		tok, err := d.ReadToken()
		if err != nil {
			var se *jsontext.SyntacticError
			if errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName) {
				return string(se.JSONPointer), true
			}
			return "", false
		}
		switch tok.Kind() {
		case '{':
			names = append(names, map[string]bool{})
		case '[':
			names = append(names, nil)
		case '}', ']':
			names = names[:len(names)-1]
		case '"':
			// A name, when the innermost object has read an odd count of tokens.
			if kind, n := d.StackIndex(d.StackDepth()); kind == '{' && n%2 == 1 {
				seen, k := names[len(names)-1], foldKey(tok.String())
				if seen[k] {
					return string(d.StackPointer()), true
				}
				seen[k] = true
			}
		}
		if len(names) == 0 {
			return "", false // the body's value is read
		}
	}
}

// foldKey is s with each rune replaced by the least of its simple case folding: two names
// have the same key exactly when strings.EqualFold (encoding/json's match) says they are equal.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// decoders keep their buffers between requests (duplicateName).
var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(new(bytes.Buffer)) }}

// effectiveParams are the parameters a request of the operation has: the path item's, each
// replaced by the operation's of the same name and location (OpenAPI's rule).
func effectiveParams(item, o openapi3.Parameters) []*openapi3.Parameter {
	key := func(p *openapi3.Parameter) [2]string {
		if p.In == "header" { // header names are case-insensitive
			return [2]string{p.In, strings.ToLower(p.Name)}
		}
		return [2]string{p.In, p.Name}
	}
	var out []*openapi3.Parameter
	own := map[[2]string]bool{}
	for _, p := range o {
		if p.Value != nil {
			out = append(out, p.Value)
			own[key(p.Value)] = true
		}
	}
	for _, p := range item {
		if p.Value != nil && !own[key(p.Value)] {
			out = append(out, p.Value)
		}
	}
	return out
}

// defaultStyles are the styles in which a primitive value is the text itself (no "." or ";"
// before it, as label and matrix put): the only ones checkNots reads.
var defaultStyles = map[string]string{"path": "simple", "header": "simple", "query": "form", "cookie": "form"}

// splitNots moves the "not" of each primitive parameter in its default style out of the route
// kin-openapi checks (copies of the path item and the operation: the description's stay whole)
// into op.nots, for those of params, the effective parameters.
func (op *operation) splitNots(params []*openapi3.Parameter) {
	effective := map[*openapi3.Parameter]bool{}
	for _, p := range params {
		effective[p] = true
	}
	strip := func(ps openapi3.Parameters) openapi3.Parameters {
		var out openapi3.Parameters
		for i, p := range ps {
			v := p.Value
			if v == nil || v.Schema == nil || v.Schema.Value == nil || v.Schema.Value.Not == nil || v.Schema.Value.Not.Value == nil ||
				v.Style != "" && v.Style != defaultStyles[v.In] {
				continue
			}
			typ := ""
			for _, t := range []string{"string", "integer", "number", "boolean"} {
				if v.Schema.Value.Type.Is(t) {
					typ = t
				}
			}
			if typ == "" {
				continue // kin-openapi refuses it, as before: nothing here reads it better
			}
			if out == nil {
				out = slices.Clone(ps)
			}
			s := *v.Schema.Value
			s.Not = nil
			pv := *v
			pv.Schema = &openapi3.SchemaRef{Value: &s}
			out[i] = &openapi3.ParameterRef{Value: &pv}
			if effective[v] {
				op.nots = append(op.nots, notParam{in: v.In, name: v.Name, typ: typ, not: v.Schema.Value.Not.Value})
			}
		}
		if out == nil {
			return ps
		}
		return out
	}
	r := *op.route
	item, o := *r.PathItem, *r.Operation
	item.Parameters, o.Parameters = strip(item.Parameters), strip(o.Parameters)
	r.PathItem, r.Operation = &item, &o
	op.route = &r
}

// checkNots refuses a parameter value that matches its "not" (op.nots). A value that does not
// read as its type is left to kin-openapi, which says so.
func (op *operation) checkNots(req *http.Request, query url.Values, path map[string]string) []Problem {
	var out []Problem
	for _, n := range op.nots {
		var raw string
		var ok bool
		switch n.in {
		case "query":
			raw, ok = query.Get(n.name), query.Has(n.name)
		case "header":
			raw, ok = req.Header.Get(n.name), len(req.Header.Values(n.name)) > 0
		case "path":
			raw, ok = path[n.name]
		case "cookie":
			if c, err := req.Cookie(n.name); err == nil {
				raw, ok = c.Value, true
			}
		}
		if !ok {
			continue
		}
		var v any = raw
		var err error
		switch n.typ {
		case "integer", "number":
			v, err = strconv.ParseFloat(raw, 64)
		case "boolean":
			v, err = strconv.ParseBool(raw)
		}
		if err == nil && n.not.VisitJSON(v, schemaOptions...) == nil {
			out = append(out, Problem{In: n.in, Name: n.name, Detail: "matches the schema it must not"})
		}
	}
	return out
}
