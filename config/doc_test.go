package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const gatewayDoc = "../docs/gateway-yaml.md"

// TestGatewayYAMLDocCoversEveryKey keeps docs/gateway-yaml.md in step with Gateway: its
// complete example loads, and it and the key table name every key, and the table no other.
func TestGatewayYAMLDocCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile(gatewayDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	keys := gatewayKeys(reflect.TypeFor[Gateway](), "")
	if len(keys) < 30 {
		t.Fatalf("found only %d keys in Gateway: %q", len(keys), keys)
	}

	example := completeExample(t, doc)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("the complete example of %s does not load: %v", gatewayDoc, err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal([]byte(example), &tree); err != nil {
		t.Fatal(err)
	}
	table := keyTable(t, doc)
	for _, k := range keys {
		if !setIn(tree, strings.Split(k, ".")) {
			t.Errorf("%s: the complete example does not set %s", gatewayDoc, k)
		}
		if !slices.Contains(table, k) {
			t.Errorf("%s: the key table has no row for `%s`", gatewayDoc, k)
		}
	}
	for _, k := range table {
		if !slices.Contains(keys, k) {
			t.Errorf("%s: the key table names `%s`, which gateway.yaml does not have", gatewayDoc, k)
		}
	}
}

// gatewayKeys lists the keys of t as gateway.yaml spells them (json tags, which
// sigs.k8s.io/yaml reads), dotted, with [] after a list of objects: issuers[].issuer.
// Types that decode themselves (Duration, ClaimNames) and maps are single keys.
func gatewayKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		key := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case decodesItself(ft):
			keys = append(keys, key)
		case ft.Kind() == reflect.Struct:
			keys = append(keys, gatewayKeys(ft, key+".")...)
		case (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array) && ft.Elem().Kind() == reflect.Struct && !decodesItself(ft.Elem()):
			keys = append(keys, gatewayKeys(ft.Elem(), key+"[].")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func decodesItself(t reflect.Type) bool {
	u := reflect.TypeFor[json.Unmarshaler]()
	return t.Implements(u) || reflect.PointerTo(t).Implements(u)
}

// setIn reports whether the key path is present in v; a part ending in [] is a list, any
// element of which may hold the rest.
func setIn(v any, path []string) bool {
	if len(path) == 0 {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	name, list := strings.CutSuffix(path[0], "[]")
	child, ok := m[name]
	if !ok {
		return false
	}
	if !list {
		return setIn(child, path[1:])
	}
	items, _ := child.([]any)
	return slices.ContainsFunc(items, func(it any) bool { return setIn(it, path[1:]) })
}

// completeExample is the first ```yaml block under the "## A complete example" heading.
func completeExample(t *testing.T, doc string) string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "\n## A complete example")
	if !ok {
		t.Fatalf("%s has no \"## A complete example\" heading", gatewayDoc)
	}
	_, after, ok = strings.Cut(after, "\n```yaml\n")
	if !ok {
		t.Fatalf("%s: no ```yaml block under \"## A complete example\"", gatewayDoc)
	}
	block, _, ok := strings.Cut(after, "\n```")
	if !ok {
		t.Fatalf("%s: the complete example's ```yaml block is not closed", gatewayDoc)
	}
	return block + "\n"
}

// keyTable lists the keys in the first cell of the rows of the table headed
// "| key | default | what |".
func keyTable(t *testing.T, doc string) []string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "\n| key | default | what |\n")
	if !ok {
		t.Fatalf("%s has no key table (| key | default | what |)", gatewayDoc)
	}
	var keys []string
	for line := range strings.Lines(after) {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		cell := strings.TrimSpace(cells[1])
		if k, ok := strings.CutPrefix(cell, "`"); ok {
			keys = append(keys, strings.TrimSuffix(k, "`"))
		}
	}
	return keys
}
