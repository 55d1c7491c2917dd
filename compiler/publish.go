package compiler

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	yamlv3 "gopkg.in/yaml.v3"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/config"
)

// The published description (gateway.yaml apiDescription): each listener serves, as JSON
// and YAML that Envoy answers itself, one OpenAPI 3.1 document of the operations it serves, as
// it serves them: at their gateway paths (basePath applied), under their route ids, with their
// parameters, bodies, responses and security schemes, and their rate limits (x-ratelimit and a
// sentence). Nothing of the gateway's own is in it: no x-specgate, no servers (backend
// URLs), no operation of another listener. Each service's components and security schemes
// are renamed <service>.<name>, since two services may both have an Order.

// wholeDoc is a spec file decoded whole as a generic document, on first use (the compiler's
// Spec.Doc holds only what the gateway reads). A file whose $refs reach other files is read
// with kin-openapi when loaded, those refs brought inside it.
type wholeDoc struct {
	data []byte       // the file, until decoded
	tree *yamlv3.Node // or an overlaid file's tree (overlaid.trees)
	once sync.Once
	doc  map[string]any
	err  error
}

// externalRef finds a $ref to another file, in JSON or YAML.
var externalRef = regexp.MustCompile(`\$ref"?\s*:\s*["']?[^#"'\s]`)

func (w *wholeDoc) get() (map[string]any, error) {
	w.once.Do(func() {
		if w.tree != nil {
			w.doc, w.err = treeDoc(w.tree)
		} else {
			w.doc, w.err = decodeWhole(w.data)
		}
		w.data, w.tree = nil, nil
	})
	return w.doc, w.err
}

// decodeWhole decodes a JSON or YAML document, numbers as written; YAML with yaml.v3, as the
// trees of overlaid files are read.
func decodeWhole(data []byte) (map[string]any, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(t))
		d.UseNumber()
		var m map[string]any
		return m, d.Decode(&m)
	}
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	return treeDoc(&n)
}

// treeDoc is a YAML document tree as JSON's values.
func treeDoc(n *yamlv3.Node) (map[string]any, error) {
	if n.Kind == yamlv3.DocumentNode {
		if len(n.Content) == 0 {
			return nil, fmt.Errorf("empty document")
		}
		n = n.Content[0]
	}
	m, ok := nodeValue(n, 0).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the document is not a mapping")
	}
	return m, nil
}

// jsonNumber is a YAML number that JSON can carry as written.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// nodeValue is a YAML node as JSON's values: mapping keys as strings (200, not an int),
// numbers as written, timestamps and other scalars as strings. Aliases are followed to a
// bounded depth.
func nodeValue(n *yamlv3.Node, depth int) any {
	if depth > 200 {
		return nil
	}
	switch n.Kind {
	case yamlv3.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = nodeValue(n.Content[i+1], depth+1)
		}
		return m
	case yamlv3.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			out[i] = nodeValue(c, depth+1)
		}
		return out
	case yamlv3.AliasNode:
		return nodeValue(n.Alias, depth+1)
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		return strings.EqualFold(n.Value, "true")
	case "!!int", "!!float":
		if jsonNumber.MatchString(n.Value) {
			return json.Number(n.Value)
		}
	}
	return n.Value
}

// publish gives each listener of gw its description documents (cfg); specs are gw's.
func publish(gw *ir.Gateway, specs []Spec, cfg config.APIDescription) Diagnostics {
	var diags Diagnostics
	if cfg.JSON == "" && cfg.YAML == "" {
		return nil
	}
	byFile := map[string]Spec{}
	for _, s := range specs {
		byFile[s.File] = s
	}
	ops := map[string]*ir.Operation{}
	services := map[string]*ir.Service{}
	for i := range gw.Services {
		s := &gw.Services[i]
		for j := range s.Operations {
			ops[s.Operations[j].ID], services[s.Operations[j].ID] = &s.Operations[j], s
		}
	}
	for li := range gw.Listeners {
		l := &gw.Listeners[li]
		for _, docPath := range []string{cfg.JSON, cfg.YAML} {
			if docPath == "" {
				continue
			}
			for _, op := range ops {
				if t, err := ir.ParseTemplate(op.Path); err == nil && t.Matches(docPath) {
					diags.add(Error, services[op.ID].File, op.Line, op.Method+" "+op.Path,
						"its path takes gateway.yaml apiDescription's %s: move the description (apiDescription) or the operation", docPath)
				}
			}
		}
		if diags.HasErrors() {
			continue
		}
		d := description{title: cfg.Title, paths: map[string]map[string]any{}, components: map[string]map[string]any{}}
		seen, warned := map[string]bool{}, map[string]bool{}
		for _, r := range l.Routes {
			if r.Kind != ir.RouteOperation || seen[r.Operation] {
				continue
			}
			seen[r.Operation] = true
			op, svc := ops[r.Operation], services[r.Operation]
			doc, err := byFile[svc.File].whole.get()
			if err != nil {
				diags.add(Error, svc.File, 0, "", "apiDescription: %v", err)
				continue
			}
			d.add(svc, op, doc)
			if d.external && !warned[svc.File] {
				warned[svc.File] = true
				diags.add(Warning, svc.File, 0, "", "apiDescription: its $refs to other files are published as written, which clients cannot follow: bundle the description into one file")
			}
			d.external = false
		}
		b, err := d.json()
		if err != nil {
			diags.errorf("gateway.yaml", "", "apiDescription: %v", err)
			continue
		}
		l.Documents = nil
		if cfg.JSON != "" {
			l.Documents = append(l.Documents, ir.Document{Path: cfg.JSON, ContentType: "application/json", Body: string(b)})
		}
		if cfg.YAML != "" {
			y, err := jsonToYAML(b)
			if err != nil {
				diags.errorf("gateway.yaml", "", "apiDescription: %v", err)
				continue
			}
			l.Documents = append(l.Documents, ir.Document{Path: cfg.YAML, ContentType: "application/yaml", Body: string(y)})
		}
	}
	return diags
}

// description is one listener's document being built.
type description struct {
	title      string
	paths      map[string]map[string]any // gateway path → path item
	components map[string]map[string]any // kind → <service>.<name> → object
	tags       []any
	tagNames   map[string]bool
	added      map[string]bool // services whose components are in
	external   bool            // a $ref to another file was published as written
}

// add puts operation op of service svc, whose file is doc, in d.
func (d *description) add(svc *ir.Service, op *ir.Operation, doc map[string]any) {
	v30 := strings.HasPrefix(str(doc["openapi"]), "3.0")
	conv := func(v any) any { return convert(v, svc.Name, v30, &d.external) }
	if d.added == nil {
		d.added, d.tagNames = map[string]bool{}, map[string]bool{}
	}
	if !d.added[svc.Name] {
		d.added[svc.Name] = true
		comps, _ := doc["components"].(map[string]any)
		for _, kind := range slices.Sorted(maps.Keys(comps)) {
			objs, ok := comps[kind].(map[string]any)
			if !ok || strings.HasPrefix(kind, "x-") {
				continue
			}
			if d.components[kind] == nil {
				d.components[kind] = map[string]any{}
			}
			for name, obj := range objs {
				if kind == "securitySchemes" {
					obj = withoutExtensions(obj)
				}
				d.components[kind][svc.Name+"."+name] = conv(obj)
			}
		}
		tags, _ := doc["tags"].([]any)
		for _, t := range tags {
			if name := str(mapOf(t)["name"]); name != "" && !d.tagNames[name] {
				d.tagNames[name] = true
				d.tags = append(d.tags, withoutExtensions(t))
			}
		}
	}
	item, specOp := findOperation(doc, op.Method, op.Path, svc.BasePath)
	if specOp == nil {
		return
	}
	out := d.paths[op.Path]
	if out == nil {
		out = map[string]any{}
		if ps, ok := item["parameters"]; ok {
			out["parameters"] = conv(ps)
		}
		d.paths[op.Path] = out
	}
	o := mapOf(conv(withoutExtensions(specOp)))
	delete(o, "servers")
	o["operationId"] = op.ID
	sec, ok := specOp["security"]
	if !ok {
		sec = doc["security"]
	}
	if reqs, ok := sec.([]any); ok {
		renamed := []any{}
		for _, r := range reqs {
			req := map[string]any{}
			for scheme, scopes := range mapOf(r) {
				req[svc.Name+"."+scheme] = scopes
			}
			renamed = append(renamed, req)
		}
		o["security"] = renamed
	}
	if len(op.RateLimits) > 0 {
		var limits []any
		var sentences []string
		for _, rl := range op.RateLimits {
			l := map[string]any{"per": string(rl.Per), "key": string(rl.Key)}
			if rl.Plans != nil {
				l["plans"] = map[string]any{"limits": rl.Plans.Limits, "default": rl.Plans.Default}
				sentences = append(sentences, fmt.Sprintf("by quota plan, per %s per %s", rl.Per, rl.Key))
			} else {
				l["requests"] = rl.Requests
				sentences = append(sentences, fmt.Sprintf("%d requests per %s per %s", rl.Requests, rl.Per, rl.Key))
			}
			limits = append(limits, l)
		}
		o["x-ratelimit"] = limits
		note := "Rate limited: " + strings.Join(sentences, "; ") + " (429 beyond, with Retry-After)."
		if desc := str(o["description"]); desc != "" {
			note = desc + "\n\n" + note
		}
		o["description"] = note
	}
	out[strings.ToLower(op.Method)] = o
}

// findOperation finds method on the path of doc that the gateway routes as gwPath under base
// (a key with a query or a fragment, /messages?beta=true, routes as its path).
func findOperation(doc map[string]any, method, gwPath, base string) (item, op map[string]any) {
	paths := mapOf(doc["paths"])
	for _, key := range slices.Sorted(maps.Keys(paths)) {
		routed := key
		if i := strings.IndexAny(key, "?#"); i > 0 {
			routed = key[:i]
		}
		if joinBase(base, routed) != gwPath {
			continue
		}
		item = mapOf(paths[key])
		if o := mapOf(item[strings.ToLower(method)]); o != nil {
			return item, o
		}
		if o := mapOf(mapOf(item["additionalOperations"])[method]); o != nil {
			return item, o
		}
	}
	return nil, nil
}

// json is the document. Its info.version is a digest of the rest: it changes with the
// content, for caches and clients that compare.
func (d *description) json() ([]byte, error) {
	parts := map[string]any{"paths": d.paths}
	if len(d.components) > 0 {
		parts["components"] = d.components
	}
	if len(d.tags) > 0 {
		parts["tags"] = d.tags
	}
	encoded := map[string]json.RawMessage{}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(parts)) {
		b, err := json.Marshal(parts[k])
		if err != nil {
			return nil, err
		}
		encoded[k] = b
		h.Write(b)
	}
	info, err := json.Marshal(map[string]any{"title": d.title, "version": hex.EncodeToString(h.Sum(nil)[:6])})
	if err != nil {
		return nil, err
	}
	encoded["info"], encoded["openapi"] = info, json.RawMessage(`"3.1.0"`)
	return json.Marshal(encoded)
}

// convert copies v with service svc's component $refs renamed, and, from an OpenAPI 3.0
// document, its schemas in 3.1's terms (nullable as a "null" type, exclusive bounds as
// numbers). A $ref to another file stays as written: external says so.
func convert(v any, svc string, v30 bool, external *bool) any {
	return convertIn(v, svc, v30, external, false)
}

// namesMaps are the OpenAPI and JSON Schema keys whose values map names (a property, a header,
// a media type) to objects: there, x- is a name like any other.
var namesMaps = map[string]bool{"properties": true, "patternProperties": true, "headers": true, "content": true,
	"encoding": true, "examples": true, "links": true, "callbacks": true, "responses": true, "schemas": true,
	"parameters": true, "requestBodies": true, "securitySchemes": true, "pathItems": true, "scopes": true,
	"mapping": true, "variables": true, "$defs": true, "dependentSchemas": true}

// convertIn is convert of v; names says its keys are names, not keywords.
func convertIn(v any, svc string, v30 bool, external *bool, names bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if !names && strings.HasPrefix(k, "x-") {
				out[k] = val // an extension's content is not OpenAPI (Cohere's x-code-samples $ref files)
				continue
			}
			out[k] = convertIn(val, svc, v30, external, !names && namesMaps[k])
		}
		if ref, ok := out["$ref"].(string); ok && strings.HasPrefix(ref, "#/components/") {
			parts := strings.SplitN(ref, "/", 4) // #, components, kind, name
			if len(parts) == 4 {
				out["$ref"] = "#/components/" + parts[2] + "/" + svc + "." + parts[3]
			}
		} else if ok && !strings.HasPrefix(ref, "#") {
			*external = true
		}
		if v30 && !names {
			schema30(out)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = convertIn(val, svc, v30, external, false)
		}
		return out
	}
	return v
}

// schema30 rewrites the OpenAPI 3.0 keywords of a schema object m that 3.1 reads otherwise.
func schema30(m map[string]any) {
	if n, ok := m["nullable"].(bool); ok {
		delete(m, "nullable")
		if t, ok := m["type"].(string); ok && n {
			m["type"] = []any{t, "null"}
		}
	}
	for _, b := range [][2]string{{"exclusiveMinimum", "minimum"}, {"exclusiveMaximum", "maximum"}} {
		if ex, ok := m[b[0]].(bool); ok {
			delete(m, b[0])
			if v, has := m[b[1]]; ex && has {
				m[b[0]] = v
				delete(m, b[1])
			}
		}
	}
}

// withoutExtensions copies an object without its x-specgate keys.
func withoutExtensions(v any) any {
	m := mapOf(v)
	if m == nil {
		return v
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		if !strings.HasPrefix(k, "x-specgate") {
			out[k] = val
		}
	}
	return out
}

func mapOf(v any) map[string]any { m, _ := v.(map[string]any); return m }
func str(v any) string           { s, _ := v.(string); return s }

// jsonToYAML writes JSON as YAML with its keys in the JSON's order (sigs.k8s.io/yaml sorts
// them in an order that depends on map iteration for keys such as "+1", "1st" and "2nd").
func jsonToYAML(j []byte) ([]byte, error) {
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(j, &n); err != nil {
		return nil, err
	}
	plainStyle(&n)
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// plainStyle drops the flow style and quotes JSON's syntax gave the nodes: YAML's block style.
// A string that a YAML 1.1 reader takes for a boolean (yes, off) keeps its quotes.
func plainStyle(n *yamlv3.Node) {
	n.Style &^= yamlv3.FlowStyle
	if !(n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" && yaml11Bool.MatchString(n.Value)) {
		n.Style &^= yamlv3.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		plainStyle(c)
	}
}

var yaml11Bool = regexp.MustCompile(`^(?i:y|yes|n|no|on|off)$`)
