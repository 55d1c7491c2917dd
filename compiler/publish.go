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

// wholeDoc is a spec file to decode whole when a part of a description is rendered from it
// (the compiler's Spec.Doc holds only what the gateway reads). It keeps the file's bytes and
// the rendered parts, never the decoded document: a fleet's decoded files would weigh ten
// times their text in a control plane that renders each part once.
type wholeDoc struct {
	data []byte       // the file
	tree *yamlv3.Node // or an overlaid file's tree (overlaid.trees)
	// fragments are its parts of the descriptions, by what they show (fragment).
	mu        sync.Mutex
	fragments map[[32]byte]*fragment
}

func (w *wholeDoc) get() (map[string]any, error) {
	if w.tree != nil {
		return treeDoc(w.tree)
	}
	return decodeWhole(w.data)
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
		var merged []any
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Tag == "!!merge" || k.Value == "<<" && k.Style == 0 {
				merged = append(merged, nodeValue(n.Content[i+1], depth+1))
				continue
			}
			m[n.Content[i].Value] = nodeValue(n.Content[i+1], depth+1)
		}
		// YAML merge keys (<<: *common), as the compiler read them: the mapping's own keys win.
		for _, v := range merged {
			sources, ok := v.([]any)
			if !ok {
				sources = []any{v}
			}
			for _, src := range sources {
				for k, val := range mapOf(src) {
					if _, own := m[k]; !own {
						m[k] = val
					}
				}
			}
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

// publish gives each listener of gw its description documents (cfg); specs are gw's. Each
// service's part is rendered once per content and operation set (wholeDoc.fragment): a push
// that changes one service of a hundred renders that one, and the documents are put together
// from the parts.
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
			op := &s.Operations[j]
			ops[op.ID], services[op.ID] = op, s
			t, err := ir.ParseTemplate(op.Path)
			for _, docPath := range []string{cfg.JSON, cfg.YAML} {
				if err == nil && docPath != "" && t.Matches(docPath) {
					diags.add(Error, s.File, op.Line, op.Method+" "+op.Path,
						"its path takes gateway.yaml apiDescription's %s: move the description (apiDescription) or the operation", docPath)
				}
			}
		}
	}
	if diags.HasErrors() {
		return diags
	}
	warned := map[string]bool{}
	for li := range gw.Listeners {
		l := &gw.Listeners[li]
		served := map[string][]*ir.Operation{} // service → its operations on l
		seen := map[string]bool{}
		for _, r := range l.Routes {
			if r.Kind == ir.RouteOperation && !seen[r.Operation] {
				seen[r.Operation] = true
				op := ops[r.Operation]
				served[services[op.ID].Name] = append(served[services[op.ID].Name], op)
			}
		}
		var frags []*fragment
		for _, name := range slices.Sorted(maps.Keys(served)) {
			svc := services[served[name][0].ID]
			f, err := byFile[svc.File].whole.fragment(svc, served[name], cfg.YAML != "")
			if err != nil {
				diags.add(Error, svc.File, 0, "", "apiDescription: %v", err)
				continue
			}
			if f.external && !warned[svc.File] {
				warned[svc.File] = true
				diags.add(Warning, svc.File, 0, "", "apiDescription: its $refs to other files are published as written, which clients cannot follow: bundle the description into one file")
			}
			frags = append(frags, f)
		}
		docs, err := assemble(frags, cfg)
		if err != nil {
			diags.errorf("gateway.yaml", "", "apiDescription: %v", err)
			continue
		}
		l.Documents = docs
	}
	return diags
}

// fragment is one service's part of a listener's description, rendered: its path items and
// components as JSON (and YAML, indented for their place), its tags.
type fragment struct {
	paths      map[string]json.RawMessage            // gateway path → path item
	components map[string]map[string]json.RawMessage // kind → <service>.<name> → object
	tags       []any
	external   bool // a $ref to another file, published as written
	yamlPaths  string
	yamlComps  map[string]string // kind → its entries
}

// fragment is the part of service svc (this file) with operations ops, rendered once per
// operation set: the key holds everything of them that the part shows.
func (w *wholeDoc) fragment(svc *ir.Service, ops []*ir.Operation, withYAML bool) (*fragment, error) {
	keyJSON, _ := json.Marshal(struct {
		Name, Base string
		Ops        []*ir.Operation
		YAML       bool
	}{svc.Name, svc.BasePath, ops, withYAML})
	key := sha256.Sum256(keyJSON)
	w.mu.Lock()
	defer w.mu.Unlock()
	if f, ok := w.fragments[key]; ok {
		return f, nil
	}
	doc, err := w.get()
	if err != nil {
		return nil, err
	}
	f, err := render(svc, ops, doc, withYAML)
	if err != nil {
		return nil, err
	}
	if len(w.fragments) >= 4 { // the public and internal listeners', and a change's
		clear(w.fragments)
	}
	if w.fragments == nil {
		w.fragments = map[[32]byte]*fragment{}
	}
	w.fragments[key] = f
	return f, nil
}

// render builds the part of service svc with operations ops from its file doc.
func render(svc *ir.Service, ops []*ir.Operation, doc map[string]any, withYAML bool) (*fragment, error) {
	f := &fragment{paths: map[string]json.RawMessage{}, components: map[string]map[string]json.RawMessage{}}
	v30 := strings.HasPrefix(str(doc["openapi"]), "3.0")
	conv := func(v any) any { return convert(v, svc.Name, v30, &f.external) }
	all := map[string]map[string]any{} // every component of the file, renamed; pathItems aside
	for kind, objs := range mapOf(doc["components"]) {
		if strings.HasPrefix(kind, "x-") || kind == "pathItems" || mapOf(objs) == nil {
			continue
		}
		all[kind] = map[string]any{}
		for name, obj := range mapOf(objs) {
			all[kind][svc.Name+"."+name] = conv(obj)
		}
	}
	tags, _ := doc["tags"].([]any)
	for _, t := range tags {
		if str(mapOf(t)["name"]) != "" {
			f.tags = append(f.tags, conv(t))
		}
	}
	items := map[string]map[string]any{}
	index := pathIndex(doc, svc.BasePath)
	for _, op := range ops {
		key, ok := index[op.Path]
		if !ok {
			continue
		}
		item := mapOf(mapOf(doc["paths"])[key])
		if ref, ok := item["$ref"].(string); ok { // a path item of components.pathItems
			if name, ok := strings.CutPrefix(ref, "#/components/pathItems/"); ok {
				item = mapOf(mapOf(mapOf(doc["components"])["pathItems"])[name])
			}
		}
		o, item := operationAt(item, op.Method)
		if o == nil {
			continue
		}
		out := items[op.Path]
		if out == nil {
			out = map[string]any{}
			if ps, ok := item["parameters"]; ok {
				out["parameters"] = conv(ps)
			}
			items[op.Path] = out
		}
		out[strings.ToLower(op.Method)] = published(svc, op, o, doc, conv)
	}
	comps := reachable(items, all)
	var err error
	for path, item := range items {
		if f.paths[path], err = json.Marshal(item); err != nil {
			return nil, err
		}
	}
	for kind, objs := range comps {
		f.components[kind] = map[string]json.RawMessage{}
		for name, obj := range objs {
			if f.components[kind][name], err = json.Marshal(obj); err != nil {
				return nil, err
			}
		}
	}
	if !withYAML {
		return f, nil
	}
	if f.yamlPaths, err = yamlEntries(items, "  "); err != nil {
		return nil, err
	}
	f.yamlComps = map[string]string{}
	for kind, objs := range comps {
		if f.yamlComps[kind], err = yamlEntries(objs, "    "); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// reachable are the components of all that the published path items use, through $refs and
// security requirements, and what those use in turn: a schema only an internal operation
// takes is not on the public listener's document.
func reachable(items map[string]map[string]any, all map[string]map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	var queue []any
	add := func(kind, name string) {
		obj, ok := all[kind][name]
		if !ok || out[kind][name] != nil {
			return
		}
		if out[kind] == nil {
			out[kind] = map[string]any{}
		}
		out[kind][name] = obj
		queue = append(queue, obj)
	}
	for _, item := range items {
		queue = append(queue, item)
		for _, op := range item {
			for _, req := range anySlice(mapOf(op)["security"]) {
				for scheme := range mapOf(req) {
					add("securitySchemes", scheme)
				}
			}
		}
	}
	for len(queue) > 0 {
		v := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if parts := strings.SplitN(ref, "/", 4); len(parts) == 4 && parts[0] == "#" && parts[1] == "components" {
					add(parts[2], parts[3])
				}
			}
			for _, val := range x {
				queue = append(queue, val)
			}
		case []any:
			queue = append(queue, x...)
		}
	}
	return out
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

// published is operation op (o in its file doc) as the description shows it.
func published(svc *ir.Service, op *ir.Operation, o, doc map[string]any, conv func(any) any) map[string]any {
	out := mapOf(conv(o))
	delete(out, "servers")
	out["operationId"] = op.ID
	sec, ok := o["security"]
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
		out["security"] = renamed
	}
	if len(op.RateLimits) == 0 {
		return out
	}
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
	out["x-ratelimit"] = limits
	note := "Rate limited: " + strings.Join(sentences, "; ") + " (429 beyond, with Retry-After)."
	if desc := str(out["description"]); desc != "" {
		note = desc + "\n\n" + note
	}
	out["description"] = note
	return out
}

// pathIndex maps each gateway path of doc's paths (base applied) to its key in them; a key
// with a query or a fragment (/messages?beta=true) routes as its path, and the first key of a
// path, in order, is the one shown.
func pathIndex(doc map[string]any, base string) map[string]string {
	index := map[string]string{}
	paths := mapOf(doc["paths"])
	for _, key := range slices.Sorted(maps.Keys(paths)) {
		routed := key
		if i := strings.IndexAny(key, "?#"); i > 0 {
			routed = key[:i]
		}
		if gw := joinBase(base, routed); index[gw] == "" {
			index[gw] = key
		}
	}
	return index
}

// operationAt is method's operation of a path item, fixed or additional.
func operationAt(item map[string]any, method string) (op, itemOut map[string]any) {
	if o := mapOf(item[strings.ToLower(method)]); o != nil {
		return o, item
	}
	return mapOf(mapOf(item["additionalOperations"])[method]), item
}

// assemble puts the listener's description together from its services' parts (in service
// order: their paths and component names never collide).
func assemble(frags []*fragment, cfg config.APIDescription) ([]ir.Document, error) {
	var components, paths bytes.Buffer
	kinds := map[string]bool{}
	for _, f := range frags {
		for k := range f.components {
			kinds[k] = true
		}
	}
	components.WriteByte('{')
	for i, kind := range slices.Sorted(maps.Keys(kinds)) {
		if i > 0 {
			components.WriteByte(',')
		}
		writeKey(&components, kind)
		components.WriteByte('{')
		first := true
		for _, f := range frags {
			for _, name := range slices.Sorted(maps.Keys(f.components[kind])) {
				if !first {
					components.WriteByte(',')
				}
				first = false
				writeKey(&components, name)
				components.Write(f.components[kind][name])
			}
		}
		components.WriteByte('}')
	}
	components.WriteByte('}')
	paths.WriteByte('{')
	first := true
	var tags []any
	tagNames := map[string]bool{}
	for _, f := range frags {
		for _, p := range slices.Sorted(maps.Keys(f.paths)) {
			if !first {
				paths.WriteByte(',')
			}
			first = false
			writeKey(&paths, p)
			paths.Write(f.paths[p])
		}
		for _, t := range f.tags {
			if name := str(mapOf(t)["name"]); !tagNames[name] {
				tagNames[name] = true
				tags = append(tags, t)
			}
		}
	}
	paths.WriteByte('}')
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	// info.version is a digest of the rest: it changes with the content, for caches and
	// clients that compare.
	h := sha256.New()
	h.Write(components.Bytes())
	h.Write(paths.Bytes())
	h.Write(tagsJSON)
	info := map[string]any{"title": cfg.Title, "version": hex.EncodeToString(h.Sum(nil)[:6])}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	var docs []ir.Document
	if cfg.JSON != "" {
		var b bytes.Buffer
		b.WriteByte('{')
		if len(kinds) > 0 {
			b.WriteString(`"components":`)
			b.Write(components.Bytes())
			b.WriteByte(',')
		}
		b.WriteString(`"info":`)
		b.Write(infoJSON)
		b.WriteString(`,"openapi":"3.1.0","paths":`)
		b.Write(paths.Bytes())
		if len(tags) > 0 {
			b.WriteString(`,"tags":`)
			b.Write(tagsJSON)
		}
		b.WriteByte('}')
		docs = append(docs, ir.Document{Path: cfg.JSON, ContentType: "application/json", Body: b.String()})
	}
	if cfg.YAML != "" {
		var b strings.Builder
		if len(kinds) > 0 {
			b.WriteString("components:\n")
			for _, kind := range slices.Sorted(maps.Keys(kinds)) {
				b.WriteString("  " + yamlKey(kind) + ":\n")
				for _, f := range frags {
					b.WriteString(f.yamlComps[kind])
				}
			}
		}
		head, err := yamlEntries(map[string]any{"info": info, "openapi": "3.1.0"}, "")
		if err != nil {
			return nil, err
		}
		b.WriteString(head)
		if paths.Len() == 2 {
			b.WriteString("paths: {}\n")
		} else {
			b.WriteString("paths:\n")
			for _, f := range frags {
				b.WriteString(f.yamlPaths)
			}
		}
		if len(tags) > 0 {
			t, err := yamlEntries(map[string]any{"tags": tags}, "")
			if err != nil {
				return nil, err
			}
			b.WriteString(t)
		}
		docs = append(docs, ir.Document{Path: cfg.YAML, ContentType: "application/yaml", Body: b.String()})
	}
	return docs, nil
}

func writeKey(b *bytes.Buffer, k string) {
	q, _ := json.Marshal(k)
	b.Write(q)
	b.WriteByte(':')
}

// yamlKey is k as a YAML mapping key.
func yamlKey(k string) string {
	y, err := jsonToYAML([]byte(`{` + string(must(json.Marshal(k))) + `:0}`))
	if err != nil {
		return k
	}
	key, _, _ := strings.Cut(string(y), ": 0")
	return key
}

func must(b []byte, _ error) []byte { return b }

// yamlEntries renders the entries of mapping m as YAML, each line indented by indent (an
// empty line stays empty: inside a block scalar it is one either way).
func yamlEntries(m any, indent string) (string, error) {
	j, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if string(j) == "{}" {
		return "", nil
	}
	y, err := jsonToYAML(j)
	if err != nil {
		return "", err
	}
	if indent == "" {
		return string(y), nil
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(y), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString(indent)
		}
		b.WriteString(line)
	}
	return b.String(), nil
}

// convert copies v with service svc's component $refs renamed, without servers (backend URLs)
// or x-specgate keys at any level, and, from an OpenAPI 3.0 document, its schemas in 3.1's
// terms (nullable as a "null" type, exclusive bounds as numbers). A $ref to another file stays
// as written: external says so.
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
			if !names && (k == "servers" || k == "server" || strings.HasPrefix(k, "x-specgate")) {
				continue // backend URLs (a path item's, a link's, a callback's), gateway policy
			}
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
// A string that a YAML 1.1 reader takes for a boolean (yes, off) keeps its quotes, and so does
// one that starts with white space (keepQuoted).
func plainStyle(n *yamlv3.Node) {
	n.Style &^= yamlv3.FlowStyle
	if !(n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" && (yaml11Bool.MatchString(n.Value) || keepQuoted(n.Value))) {
		n.Style &^= yamlv3.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		plainStyle(c)
	}
}

// keepQuoted: yaml.v3 writes a string that starts with a line break as a literal block with
// one line break less ("\n\nHuman" comes back "\nHuman"); quoted, it is written exactly.
func keepQuoted(s string) bool { return strings.HasPrefix(s, "\n") || strings.HasPrefix(s, "\r") }

var yaml11Bool = regexp.MustCompile(`^(?i:y|yes|n|no|on|off)$`)
