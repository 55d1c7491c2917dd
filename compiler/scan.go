package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	yaml "go.yaml.in/yaml/v4"
)

// A spec file is read twice over, for two different needs. The scan below reads every byte
// once: syntax, duplicate keys anywhere, what kind of file it is, the line of every key the
// gateway reads, and a pruned copy of the document holding only those parts (openapi, info,
// servers, security, x-*, paths with each operation's operationId, security and x-*, the name
// and place of each parameter, and components.securitySchemes, parameters and pathItems).
// kin-openapi then decodes that small copy. The
// rest — schemas, examples, responses, descriptions, most of the bytes of a real spec — is
// documentation: checked for syntax and duplicate keys, never decoded, never refused.

// keepRule says what the scan does with a value, by its place in the document.
type keepRule int

const (
	skip  keepRule = iota // syntax and duplicate keys only
	whole                 // kept as it is
	walk                  // an object whose keys are decided one by one
)

// operationKeys are the path item keys that hold an operation (OpenAPI 3.0–3.2).
var operationKeys = map[string]bool{"get": true, "put": true, "post": true, "delete": true,
	"options": true, "head": true, "patch": true, "trace": true, "query": true, "connect": true}

// isExt is true for extension keys, in any case: X-Specgate must reach the check that refuses
// it, not be pruned as documentation.
func isExt(k string) bool { return len(k) > 1 && (k[0] == 'x' || k[0] == 'X') && k[1] == '-' }

// ruleAt decides for the value at path (the keys from the document's root).
func ruleAt(path []string) keepRule {
	if len(path) == 0 {
		return walk
	}
	switch k := path[0]; {
	case len(path) == 1 && (k == "paths" || k == "components"):
		return walk
	case len(path) == 1 && (k == "openapi" || k == "swagger" || k == "info" || k == "servers" ||
		k == "security" || k == "kind" || k == "apiVersion" || isExt(k)):
		return whole
	case k == "paths":
		return pathItemRule(path[2:])
	case k == "components" && path[1] == "securitySchemes":
		if len(path) == 2 {
			return walk
		}
		return whole
	case k == "components" && path[1] == "parameters" && len(path) == 2:
		return whole // slimParameters keeps their names and places
	case k == "components" && path[1] == "pathItems":
		if len(path) == 2 {
			return walk
		}
		return pathItemRule(path[3:])
	}
	return skip
}

// pathItemRule decides inside one path item (p is relative to the item).
func pathItemRule(p []string) keepRule {
	switch {
	case len(p) == 0:
		return walk
	case p[0] == "$ref" || p[0] == "parameters" || isExt(p[0]):
		if len(p) == 1 {
			return whole
		}
	case operationKeys[p[0]]:
		return operationRule(p[1:])
	case p[0] == "additionalOperations":
		if len(p) == 1 {
			return walk
		}
		return operationRule(p[2:])
	}
	return skip
}

func operationRule(p []string) keepRule {
	switch {
	case len(p) == 0:
		return walk
	case len(p) == 1 && (p[0] == "operationId" || p[0] == "security" || p[0] == "parameters" || isExt(p[0])):
		return whole
	}
	return skip
}

// slimParameters reduces every parameter of the pruned document (of path items, operations
// and components.parameters) to its name and place, or its $ref: what the gateway reads of
// them (an access_token query parameter), without the schemas their other keys may name.
func slimParameters(root map[string]any) {
	slim := func(v any) any {
		list, ok := v.([]any)
		if !ok {
			return v // not a list: kin-openapi refuses it
		}
		out := make([]any, len(list))
		for i, p := range list {
			out[i] = slimParameter(p)
		}
		return out
	}
	items := func(paths any) {
		m, _ := paths.(map[string]any)
		for _, item := range m {
			im, _ := item.(map[string]any)
			for k, v := range im {
				switch {
				case k == "parameters":
					im[k] = slim(v)
				case operationKeys[k]:
					if om, ok := v.(map[string]any); ok && om["parameters"] != nil {
						om["parameters"] = slim(om["parameters"])
					}
				case k == "additionalOperations":
					ops, _ := v.(map[string]any)
					for _, op := range ops {
						if om, ok := op.(map[string]any); ok && om["parameters"] != nil {
							om["parameters"] = slim(om["parameters"])
						}
					}
				}
			}
		}
	}
	items(root["paths"])
	if c, ok := root["components"].(map[string]any); ok {
		items(c["pathItems"])
		if ps, ok := c["parameters"].(map[string]any); ok {
			for name, p := range ps {
				ps[name] = slimParameter(p)
			}
		}
	}
}

func slimParameter(p any) any {
	m, ok := p.(map[string]any)
	if !ok {
		return p
	}
	if ref, ok := m["$ref"]; ok {
		return map[string]any{"$ref": ref}
	}
	out := map[string]any{}
	for _, k := range []string{"name", "in"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// scanned is what the scan learned of one file.
type scanned struct {
	docs  int            // YAML documents in the file (JSON: 1)
	root  map[string]any // the pruned document; nil when the top level is not an object
	top   string         // what the top level is when it is not an object
	lines map[string]int // JSON pointer of every kept key (what the gateway reads) → its line
	dups  []dupKey
}

type dupKey struct {
	pointer     string // of the object holding the key
	key         string
	line, first int
}

func (d dupKey) String() string {
	where := d.pointer
	if where == "" {
		where = "the top level"
	}
	return fmt.Sprintf("duplicate key %q in %s (first at line %d): the document says two things; keep one", d.key, where, d.first)
}

func pointerAppend(ptr, key string) string {
	if strings.ContainsAny(key, "~/") {
		key = strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
	}
	return ptr + "/" + key
}

// scan reads one file; its error is a syntax error, already located by line.
func scan(data []byte) (*scanned, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return scanJSON(data)
	}
	return scanYAML(data)
}

// lineCounter turns increasing byte offsets into line numbers without rescanning.
type lineCounter struct {
	data       []byte
	off, lines int
}

func (c *lineCounter) at(off int64) int {
	o := min(int(off), len(c.data))
	if o < c.off { // offsets only grow in one pass; recount for the rare step back
		c.off, c.lines = 0, 0
	}
	c.lines += bytes.Count(c.data[c.off:o], []byte{'\n'})
	c.off = o
	return c.lines + 1
}

func newJSONDecoder(data []byte, allowDups bool) *jsontext.Decoder {
	// A bytes.Buffer is parsed in place, not copied into the decoder's own buffer.
	return jsontext.NewDecoder(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(allowDups), jsontext.AllowInvalidUTF8(true))
}

func scanJSON(data []byte) (*scanned, error) {
	s := &scanned{docs: 1, lines: map[string]int{}}
	dec := newJSONDecoder(data, false)
	lc := &lineCounter{data: data}
	var path []string
	// readValue reads the value at path, whose rule is not skip.
	var readValue func(ptr string) (any, error)
	readValue = func(ptr string) (any, error) {
		if ruleAt(path) == whole || dec.PeekKind() != '{' {
			raw, err := dec.ReadValue()
			if err != nil {
				return nil, err
			}
			var v any
			return v, json.Unmarshal(raw, &v)
		}
		if _, err := dec.ReadToken(); err != nil { // {
			return nil, err
		}
		obj := map[string]any{}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := tok.String()
			path = append(path, key)
			if ruleAt(path) == skip {
				err = dec.SkipValue()
			} else {
				kp := pointerAppend(ptr, key)
				s.lines[kp] = lc.at(dec.InputOffset() - 1)
				obj[key], err = readValue(kp)
			}
			path = path[:len(path)-1]
			if err != nil {
				return nil, err
			}
		}
		_, err := dec.ReadToken() // }
		return obj, err
	}
	v, err := readValue("")
	if err == nil {
		if _, err = dec.ReadToken(); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	if err != nil {
		var se *jsontext.SyntacticError
		if errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName) {
			s.dups = jsonDuplicates(data)
			return s, nil
		}
		return nil, jsonSyntaxError(data, err)
	}
	if obj, ok := v.(map[string]any); ok {
		s.root = obj
	} else {
		s.top = "a JSON list or value"
	}
	return s, nil
}

// jsonDuplicates lists every duplicate key of a file the fast pass found one in: the slow
// pass tracks each object's keys itself.
func jsonDuplicates(data []byte) []dupKey {
	dec := newJSONDecoder(data, true)
	lc := &lineCounter{data: data}
	type object struct {
		ptr  string
		keys map[string]int
	}
	var (
		stack []object
		dups  []dupKey
	)
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return dups
		}
		switch tok.Kind() {
		case '{':
			stack = append(stack, object{ptr: string(dec.StackPointer()), keys: map[string]int{}})
		case '}':
			stack = stack[:len(stack)-1]
		case '"':
			if kind, n := dec.StackIndex(dec.StackDepth()); kind == '{' && n%2 == 1 {
				o, line := stack[len(stack)-1], lc.at(dec.InputOffset()-1)
				if first, dup := o.keys[tok.String()]; dup {
					dups = append(dups, dupKey{pointer: o.ptr, key: tok.String(), line: line, first: first})
				} else {
					o.keys[tok.String()] = line
				}
			}
		}
	}
}

func jsonSyntaxError(data []byte, err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		lc := &lineCounter{data: data}
		msg := se.Err.Error()
		if msg == "" {
			msg = se.Error()
		}
		return &lineError{line: lc.at(se.ByteOffset), msg: "JSON syntax: " + strings.TrimPrefix(msg, "jsontext: ")}
	}
	return &lineError{msg: "JSON syntax: " + err.Error()}
}

// lineError is a problem the parser located.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

func scanYAML(data []byte) (*scanned, error) {
	s := &scanned{lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, yamlSyntaxError(err)
		}
		s.docs++
		if first == nil {
			first = &doc
		}
	}
	if first == nil || len(first.Content) == 0 {
		return s, nil
	}
	root := resolveAlias(first.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		s.docs = 0 // a file of comments only, or a lone "---"
		return s, nil
	}
	s.dups = yamlDuplicates(root, nil, nil)
	if root.Kind != yaml.MappingNode {
		s.top = "a YAML list or scalar"
		return s, nil
	}
	var path []string
	// readNode reads the node at path, whose rule is not skip.
	var readNode func(n *yaml.Node, ptr string) (any, error)
	readNode = func(n *yaml.Node, ptr string) (any, error) {
		n = resolveAlias(n)
		if ruleAt(path) == whole || n.Kind != yaml.MappingNode || hasMergeKey(n) {
			var v any
			if err := n.Decode(&v); err != nil {
				return nil, &lineError{line: n.Line, msg: "YAML: " + err.Error()}
			}
			return jsonCompatible(v), nil
		}
		obj := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			path = append(path, key)
			var err error
			if ruleAt(path) != skip {
				kp := pointerAppend(ptr, key)
				s.lines[kp] = n.Content[i].Line
				obj[key], err = readNode(n.Content[i+1], kp)
			}
			path = path[:len(path)-1]
			if err != nil {
				return nil, err
			}
		}
		return obj, nil
	}
	v, err := readNode(root, "")
	if err != nil {
		return nil, err
	}
	s.root, _ = v.(map[string]any)
	return s, nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func hasMergeKey(n *yaml.Node) bool {
	for i := 0; i < len(n.Content); i += 2 {
		if n.Content[i].Tag == "!!merge" {
			return true
		}
	}
	return false
}

// yamlDuplicates walks every mapping of the document. Aliases are not followed: the mapping
// they point at is checked where it stands. path is the keys from the root; the pointer is
// made only for a duplicate.
func yamlDuplicates(n *yaml.Node, path []string, dups []dupKey) []dupKey {
	switch n.Kind {
	case yaml.MappingNode:
		var seen map[string]int // for large mappings (paths); small ones are scanned
		if len(n.Content) > 16 {
			seen = make(map[string]int, len(n.Content)/2)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode && k.Tag != "!!merge" {
				first := 0
				if seen != nil {
					first = seen[k.Value]
					if first == 0 {
						seen[k.Value] = k.Line
					}
				} else {
					for j := 0; j < i; j += 2 {
						if prev := n.Content[j]; prev.Kind == yaml.ScalarNode && prev.Value == k.Value && prev.Tag != "!!merge" {
							first = prev.Line
							break
						}
					}
				}
				if first != 0 {
					ptr := ""
					for _, p := range path {
						ptr = pointerAppend(ptr, p)
					}
					dups = append(dups, dupKey{pointer: ptr, key: k.Value, line: k.Line, first: first})
				}
			}
			dups = yamlDuplicates(n.Content[i+1], append(path, k.Value), dups)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			dups = yamlDuplicates(c, append(path, strconv.Itoa(i)), dups)
		}
	}
	return dups
}

// jsonCompatible turns YAML's map[any]any (a mapping with a non-string key) into
// map[string]any, so the pruned document can be handed on as JSON.
func jsonCompatible(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonCompatible(e)
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonCompatible(e)
		}
	}
	return v
}

func yamlSyntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if _, e := fmt.Sscanf(n, "%d", &line); e == nil {
				msg = after
			}
		}
	}
	return &lineError{line: line, msg: "YAML syntax: " + msg}
}
