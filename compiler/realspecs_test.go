package compiler_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/realspecs"
)

// TestRealSpecs compiles the real public descriptions (make specs) together: no error, and
// every operation of each document is a route, or merged into one with a warning that names
// both. The operations are counted from a plain decode of each whole file.
func TestRealSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := realspecs.Write(dir, "http://127.0.0.1:8081", realspecs.All...); err != nil {
		t.Fatal(err)
	}
	gw, diags := compiler.Compile(dir, compiler.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	merged := map[string]int{}
	for _, d := range diags {
		if !strings.Contains(d.Message, "a router cannot tell it from") {
			t.Errorf("unexpected warning: %s", d)
		}
		merged[strings.TrimSuffix(d.File, filepath.Ext(d.File))]++
	}
	routes := map[string]int{}
	for _, s := range gw.Services {
		routes[s.Name] = len(s.Operations)
	}
	for _, src := range realspecs.All {
		b, err := realspecs.Prepare(src, "http://127.0.0.1:8081")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Paths map[string]map[string]any `json:"paths"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", src.Name, err)
		}
		ops := 0
		for _, item := range doc.Paths {
			for k := range item {
				if slices.Contains([]string{"get", "put", "post", "delete", "options", "head", "patch", "trace", "query"}, k) {
					ops++
				}
			}
		}
		if routes[src.Name]+merged[src.Name] != ops || ops < 40 {
			t.Errorf("%s: %d routes + %d merged, want the document's %d operations", src.Name, routes[src.Name], merged[src.Name], ops)
		}
		t.Logf("%s: %d operations, %d routes", src.Name, ops, routes[src.Name])
	}
	if routes["github"] != 1223 {
		t.Errorf("GitHub's description (@octokit/openapi pinned in the Makefile) has 1,223 operations, got %d routes", routes["github"])
	}
	if _, err := translate.Translate(gw, translate.Options{}); err != nil {
		t.Fatal(err)
	}
}

// Each real description takes its gateway policy from an overlay alone, and compiles to the
// same Envoy resources, byte for byte, as with the same policy written into it.
func TestRealSpecsFromOverlays(t *testing.T) {
	for _, src := range realspecs.All {
		t.Run(src.Name, func(t *testing.T) {
			inline, err := realspecs.Prepare(src, "http://127.0.0.1:8081")
			if err != nil {
				t.Fatal(err)
			}
			desc, overlay, err := realspecs.Overlay(src, "http://127.0.0.1:8081")
			if err != nil {
				t.Fatal(err)
			}
			name := src.Name + filepath.Ext(src.File)
			compile := func(files map[string][]byte) []byte {
				t.Helper()
				gw, diags := compiler.CompileFiles("", files, compiler.Options{})
				if err := diags.Err(); err != nil {
					t.Fatal(err)
				}
				res, err := translate.Translate(gw, translate.Options{})
				if err != nil {
					t.Fatal(err)
				}
				b, err := res.YAML()
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			a := compile(map[string][]byte{name: inline})
			b := compile(map[string][]byte{name: desc, src.Name + ".overlay.yaml": overlay})
			if string(a) != string(b) {
				t.Errorf("%s: the overlay compiles to other resources than the inline policy (%d and %d bytes)", src.Name, len(a), len(b))
			}
		})
	}
}

// The real descriptions (make specs) published together on the public listener: a valid
// OpenAPI 3.1 document with every public operation once, under its gateway path, and nothing
// of the gateway's own or the backends': no x-specgate, no servers, no backend URL.
func TestRealSpecsPublished(t *testing.T) {
	dir := t.TempDir()
	if err := realspecs.Write(dir, "http://127.0.0.1:8081", realspecs.All...); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.APIDescription = config.APIDescription{JSON: "/openapi.json", YAML: "/openapi.yaml", Title: "API"}
	gw, diags := compiler.Compile(dir, compiler.Options{Gateway: &cfg})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	l := gw.Listeners[0]
	if l.Name != ir.ListenerPublic || len(l.Documents) != 2 {
		t.Fatalf("listener %s: %d documents, want the public one's JSON and YAML", l.Name, len(l.Documents))
	}
	body := l.Documents[0].Body
	// The YAML, put together from each service's part, is the JSON's document.
	j, err := yaml.YAMLToJSON([]byte(l.Documents[1].Body))
	var fromYAML, fromJSON any
	if err == nil {
		err = json.Unmarshal(j, &fromYAML)
	}
	if err != nil || json.Unmarshal([]byte(body), &fromJSON) != nil || !reflect.DeepEqual(fromYAML, fromJSON) {
		t.Errorf("the YAML description is not the JSON's document (%v)", err)
	}
	for _, leak := range []string{`"x-specgate`, `"servers"`, "127.0.0.1:8081"} {
		if i := strings.Index(body, leak); i >= 0 {
			t.Errorf("the published description holds %s: …%s…", leak, body[max(0, i-80):min(len(body), i+80)])
		}
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	// Each description published alone is a valid OpenAPI 3.1 document wherever the
	// description itself is valid: its own documentation (examples, defaults, patterns) is
	// its business, and OpenAI's uses $recursiveRef, which kin-openapi refuses in both.
	validate := func(b []byte) error {
		d, err := openapi3.NewLoader().LoadFromData(b)
		if err != nil {
			return err
		}
		return d.Validate(context.Background(), openapi3.DisableExamplesValidation(), openapi3.DisableSchemaDefaultsValidation(),
			openapi3.DisableSchemaPatternValidation())
	}
	for _, src := range realspecs.All {
		b, err := realspecs.Prepare(src, "http://127.0.0.1:8081")
		if err != nil {
			t.Fatal(err)
		}
		alone, diags := compiler.CompileFiles("", map[string][]byte{src.Name + filepath.Ext(src.File): b}, compiler.Options{Gateway: &cfg})
		if err := diags.Err(); err != nil {
			t.Fatal(err)
		}
		srcErr, pubErr := validate(b), validate([]byte(alone.Listeners[0].Documents[0].Body))
		first := func(err error) string {
			if err == nil {
				return "valid"
			}
			line, _, _ := strings.Cut(err.Error(), "\n")
			return line
		}
		t.Logf("%s: the description: %s; published: %s", src.Name, first(srcErr), first(pubErr))
		if srcErr == nil && pubErr != nil {
			t.Errorf("%s: valid, but its published description is not: %v", src.Name, pubErr)
		}
	}
	want := 0
	for _, r := range l.Routes {
		if r.Kind == ir.RouteOperation {
			want++
		}
	}
	got := 0
	for path, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			got++
			if base := "/" + strings.SplitN(op.OperationID, ".", 2)[0]; path != base && !strings.HasPrefix(path, base+"/") {
				t.Errorf("%s: operation %s is not under its service's basePath", path, op.OperationID)
			}
		}
	}
	t.Logf("figure: the public description of the four real descriptions: %d operations, %.1f MB of JSON", got, float64(len(body))/1e6)
	if got != want {
		t.Errorf("%d operations published, the public listener routes %d", got, want)
	}
}
