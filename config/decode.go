package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"go.yaml.in/yaml/v4"
	sigsyaml "sigs.k8s.io/yaml"
)

// decode reads a gateway.yaml document into g (over its values), strictly: an unknown key, a
// key given twice or a value of the wrong type is an error naming the key's path and its line
// (and, for a misspelt key, the key meant).
func decode(b []byte, g *Gateway) error {
	j, err := sigsyaml.YAMLToJSONStrict(b) // a key given twice is an error
	if err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	err = json.Unmarshal(j, g, json.RejectUnknownMembers(true), json.MatchCaseInsensitiveNames(true))
	var se *json.SemanticError
	if err == nil || !errors.As(err, &se) {
		return err
	}
	ptr := se.JSONPointer
	what := "wrong value"
	switch {
	case se.Err != nil && strings.Contains(se.Err.Error(), "unknown object member"):
		// The pointer names the unknown key itself.
		name := ptr.LastToken()
		what = fmt.Sprintf("unknown key %q", name)
		what += DidYouMean(name, knownKeys(ptr.Parent()))
	case se.Err != nil:
		what = se.Err.Error()
	case se.GoType != nil:
		what = fmt.Sprintf("want %s, not a %s", typeName(se.GoType.String()), se.JSONKind)
	}
	path := strings.Join(slices.Collect(ptr.Tokens()), ".")
	if line := lineOf(b, ptr); line > 0 {
		return fmt.Errorf("line %d: %s: %s", line, path, what)
	}
	return fmt.Errorf("%s: %s", path, what)
}

// typeName says a Go type in gateway.yaml's words.
func typeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config."):
		return "a mapping"
	case t == "bool":
		return "true or false"
	case strings.Contains(t, "int"), strings.Contains(t, "float"):
		return "a number"
	}
	return t
}

// knownKeys are the keys gateway.yaml accepts at ptr, read from the Gateway type (so that
// keys left out when empty, such as backendTLS, are known too).
func knownKeys(ptr jsontext.Pointer) []string {
	t := reflect.TypeFor[Gateway]()
	for tok := range ptr.Tokens() {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByJSONName(t, tok)
			if !ok {
				return nil
			}
			t = f.Type
		case reflect.Slice, reflect.Map: // an index, or a map key such as a profile's name
			t = t.Elem()
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// DidYouMean is ` (did you mean "KEY"?)` for the known key nearest to name when name is a
// likely misspelling of it (at most two edits, case aside), else "".
func DidYouMean(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range slices.Sorted(slices.Values(known)) {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// lineOf is the line of the key or item ptr names in the YAML document b (0 if not found).
func lineOf(b []byte, ptr jsontext.Pointer) int {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n, line := doc.Content[0], 0
	for tok := range ptr.Tokens() {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if strings.EqualFold(n.Content[i].Value, tok) {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}
