package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/specgate/specgate/test/harness/realspecs"
)

// Every JSON request-body example of GitHub's description (make specs) is checked against its
// own operation. An example that its schema refuses is named (GitHub's description has a few);
// each one it accepts is then broken three ways (a property of the wrong type, a required one
// missing, one that additionalProperties forbids), and each break must be refused with the
// property's pointer.
func TestGitHubExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(realspecs.Dir(), realspecs.GitHub.File))
	if err != nil {
		t.Fatalf("%v (run make specs)", err)
	}
	d, err := parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var examples, accepted, mutations int
	var disagree, missed []string
	for _, path := range slices.Sorted(maps.Keys(d.doc.Paths.Map())) {
		for method, o := range d.doc.Paths.Value(path).Operations() {
			if o.RequestBody == nil || o.RequestBody.Value == nil {
				continue
			}
			mt := o.RequestBody.Value.Content.Get("application/json")
			if mt == nil || mt.Schema == nil {
				continue
			}
			op, err := d.operation(opKey{method: method, path: path, template: path})
			if err != nil {
				t.Fatal(err)
			}
			for name, ex := range bodyExamples(mt) {
				where := fmt.Sprintf("%s %s example %s", method, path, name)
				examples++
				if ps := checkBody(t, op, ex); len(ps) > 0 {
					disagree = append(disagree, fmt.Sprintf("%s: %s %s", where, ps[0].Pointer, ps[0].Detail))
					continue
				}
				accepted++
				for _, m := range mutate(mt.Schema.Value, ex) {
					mutations++
					ps := checkBody(t, op, m.body)
					if !slices.ContainsFunc(ps, func(p Problem) bool { return p.Pointer == m.pointer }) {
						missed = append(missed, fmt.Sprintf("%s, %s: %+v", where, m.what, ps))
					}
				}
			}
		}
	}
	t.Logf("figure: %d JSON body examples in GitHub's description; %d accepted by their own schema, %d refused:\n  %s",
		examples, accepted, len(disagree), strings.Join(disagree, "\n  "))
	t.Logf("figure: %d broken copies of the accepted examples, %d not refused at the right pointer", mutations, len(missed))
	if examples < 100 || mutations < 100 {
		t.Errorf("only %d examples and %d broken copies: the description changed shape?", examples, mutations)
	}
	for _, m := range missed {
		t.Error(m)
	}
}

func bodyExamples(mt *openapi3.MediaType) map[string]any {
	out := map[string]any{}
	if mt.Example != nil {
		out["example"] = mt.Example
	}
	for name, ex := range mt.Examples {
		if ex != nil && ex.Value != nil && ex.Value.Value != nil {
			out[name] = ex.Value.Value
		}
	}
	return out
}

// checkBody is what the processor answers a POST of v as JSON (path and query aside).
func checkBody(t *testing.T, op *operation, v any) []Problem {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://gw/", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	err = openapi3filter.ValidateRequestBody(context.Background(), &openapi3filter.RequestValidationInput{
		Request: req, Route: op.route, Options: filterOptions}, op.route.Operation.RequestBody.Value)
	if err != nil {
		return op.outcome(err).Problems
	}
	return op.readOnlyOutcome("application/json", body).Problems
}

type mutation struct {
	what, pointer string
	body          map[string]any
}

// mutate breaks an object example against its schema's own properties, one way each.
func mutate(s *openapi3.Schema, ex any) []mutation {
	obj, ok := ex.(map[string]any)
	if !ok || s == nil {
		return nil
	}
	with := func(f func(m map[string]any)) map[string]any {
		m := maps.Clone(obj)
		f(m)
		return m
	}
	var out []mutation
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		p := s.Properties[name]
		if p == nil || p.Value == nil || p.Value.Nullable || len(p.Value.OneOf)+len(p.Value.AnyOf) > 0 {
			continue
		}
		if p.Value.Type.Is("string") {
			out = append(out, mutation{"property " + name + " a number", "/" + name, with(func(m map[string]any) { m[name] = 12345 })})
			break
		}
	}
	for _, name := range s.Required {
		if _, ok := obj[name]; ok {
			out = append(out, mutation{"required " + name + " missing", "/" + name, with(func(m map[string]any) { delete(m, name) })})
			break
		}
	}
	if ap := s.AdditionalProperties.Has; ap != nil && !*ap {
		out = append(out, mutation{"an unknown property", "/specgate_unknown", with(func(m map[string]any) { m["specgate_unknown"] = true })})
	}
	return out
}
