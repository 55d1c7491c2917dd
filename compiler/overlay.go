package compiler

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/speakeasy-api/openapi-overlay/pkg/overlay"
	"gopkg.in/yaml.v3"
)

// Overlays (OpenAPI Overlay 1.0) let a team keep gateway policy out of a description it
// generates from code: a file with `overlay: 1.0.0` beside the descriptions, whose `extends`
// names the description it changes (a file of the same set), and whose actions update or
// remove what their JSONPath targets select. Overlays apply before intake, in file-name order;
// the description then compiles as if written that way. A target that selects nothing is an
// error, so that a renamed path cannot silently drop its policy. Diagnostics point at the
// overlay's line for what an overlay wrote, at the description's line for the rest.

// origin is where a line of an overlaid description comes from.
type origin struct {
	file string
	line int
}

// overlaid is the result of applying the overlays of a spec set: the files to load (the
// descriptions, overlaid ones rewritten; not the overlays), and for each rewritten one, where
// each of its lines comes from.
type overlaid struct {
	files   map[string][]byte
	origins map[string][]origin // file → origin by line (index: line number)
	// trees are the overlaid descriptions as trees, for the published description: yaml.v3
	// does not write every block scalar back as it read it (a line of spaces can come back
	// as an empty line), which routing never reads but a description's text shows.
	trees map[string]*yaml.Node
}

// isOverlay reports whether a spec file is an overlay: its top level has the overlay key,
// however it is spelt. Overlays are small: a file that does not name "overlay" early is not
// parsed (a large description would cost a second).
func isOverlay(b []byte) bool {
	if !bytes.Contains(b[:min(len(b), 4096)], []byte("overlay")) {
		return false
	}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil {
		return false
	}
	return keyLine(&doc, "overlay") > 0
}

// applyOverlays applies every overlay of files (names: overlayNames) to the description it
// extends.
func applyOverlays(files map[string][]byte, names []string) (overlaid, Diagnostics) {
	out := overlaid{files: withoutOverlays(files, names)}
	var diags Diagnostics
	type target struct {
		root    *yaml.Node
		origins map[*yaml.Node]origin
	}
	targets := map[string]*target{}
	for _, name := range names {
		var doc yaml.Node
		var o overlay.Overlay
		if err := yaml.Unmarshal(files[name], &doc); err != nil {
			diags.errorf(name, "", "overlay: %v", err)
			continue
		}
		if err := doc.Decode(&o); err != nil {
			diags.errorf(name, "", "overlay: %v", err)
			continue
		}
		if err := o.Validate(); err != nil {
			diags.errorf(name, "", "overlay: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
			continue
		}
		extendsLine := keyLine(&doc, "extends")
		ext := path.Clean(strings.TrimPrefix(o.Extends, "file:"))
		if _, ok := files[ext]; !ok || slices.Contains(names, ext) {
			diags.add(Error, name, extendsLine, "", "overlay: extends %q: no description of that name in the spec set (name a file beside the overlay, such as orders.yaml)", o.Extends)
			continue
		}
		tg := targets[ext]
		if tg == nil {
			tg = &target{origins: map[*yaml.Node]origin{}}
			var root yaml.Node
			if err := yaml.Unmarshal(files[ext], &root); err != nil {
				diags.errorf(ext, "", "overlay %s: the description does not parse: %v", name, err)
				continue
			}
			tg.root = &root
			walkNodes(tg.root, func(n *yaml.Node) { tg.origins[n] = origin{ext, n.Line} })
			targets[ext] = tg
		}
		// The Overlay specification's targets are RFC 9535 JSONPath.
		o.JSONPathVersion = "rfc9535"
		actions := yamlSeq(&doc, "actions")
		for i, a := range o.Actions {
			line := extendsLine
			if i < len(actions) {
				line = actions[i].Line
				if bad := unknownActionKey(actions[i]); bad != "" {
					diags.add(Error, name, line, "", "overlay: actions[%d]: unknown key %q (target, description, update, remove)", i, bad)
					continue
				}
			}
			if !a.Remove && (a.Update.Kind == 0 || a.Update.Tag == "!!null") {
				diags.add(Error, name, line, "", "overlay: actions[%d]: neither an update nor remove: true", i)
				continue
			}
			p, err := o.NewPath(a.Target, nil)
			if err != nil {
				diags.add(Error, name, line, "", "overlay: target %q: %v", a.Target, err)
				continue
			}
			nodes := p.Query(tg.root)
			if len(nodes) == 0 {
				diags.add(Error, name, line, "", "overlay: target %q selects nothing in %s: its update would be lost", a.Target, ext)
				continue
			}
			if a.Remove {
				for _, n := range nodes {
					removeNode(tg.root, n)
				}
				continue
			}
			for _, n := range nodes {
				merge(n, &a.Update, func(src *yaml.Node) origin { return origin{name, src.Line} }, tg.origins)
			}
		}
	}
	if diags.HasErrors() {
		return out, diags
	}
	out.origins, out.trees = map[string][]origin{}, map[string]*yaml.Node{}
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		tg := targets[name]
		// Block style throughout: a description written in JSON (flow style) would come out
		// as YAML flow mappings that the loader would take for JSON.
		walkNodes(tg.root, func(n *yaml.Node) {
			n.Style &^= yaml.FlowStyle
			if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && keepQuoted(n.Value) {
				n.Style = yaml.DoubleQuotedStyle // written exactly (publish.go, keepQuoted)
			}
		})
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(tg.root); err != nil {
			diags.errorf(name, "", "overlay: %v", err)
			continue
		}
		b := buf.Bytes()
		// Each line of the new text comes from the node of the tree it was written from.
		var again yaml.Node
		if err := yaml.Unmarshal(b, &again); err != nil {
			diags.errorf(name, "", "overlay: %v", err)
			continue
		}
		lines := make([]origin, bytes.Count(b, []byte("\n"))+2)
		// A line holding a description's key and an overlay's value is the overlay's.
		lockstep(tg.root, &again, func(from, written *yaml.Node) {
			if o, ok := tg.origins[from]; ok && written.Line < len(lines) && (lines[written.Line].file == "" || lines[written.Line].file == name && o.file != name) {
				lines[written.Line] = o
			}
		})
		out.files[name] = b
		out.origins[name] = lines
		out.trees[name] = tg.root
	}
	return out, diags
}

// overlays is applyOverlays, keeping its last result while the overlays and the descriptions
// they extend stay the same: rewriting a large description takes seconds, and the control
// plane compiles the whole set on every push.
func (l *Loader) overlays(files map[string][]byte) (overlaid, Diagnostics) {
	names := overlayNames(files)
	if len(names) == 0 {
		return overlaid{files: files}, nil
	}
	h := sha256.New()
	for _, name := range names {
		var o struct {
			Extends string `yaml:"extends"`
		}
		_ = yaml.Unmarshal(files[name], &o) // a broken overlay is reported by applyOverlays
		ext := path.Clean(strings.TrimPrefix(o.Extends, "file:"))
		for _, part := range []string{name, string(files[name]), ext, string(files[ext])} {
			fmt.Fprintf(h, "%d:%s", len(part), part)
		}
	}
	var key [32]byte
	h.Sum(key[:0])
	l.mu.Lock()
	last := l.lastOverlays
	l.mu.Unlock()
	if last != nil && last.key == key {
		ov := overlaid{files: withoutOverlays(files, names), origins: last.origins}
		maps.Copy(ov.files, last.rewritten)
		return ov, slices.Clone(last.diags)
	}
	ov, diags := applyOverlays(files, names)
	kept := &overlayCache{key: key, origins: ov.origins, diags: slices.Clone(diags), rewritten: map[string][]byte{}}
	for name := range ov.origins {
		kept.rewritten[name] = ov.files[name]
	}
	l.mu.Lock()
	l.lastOverlays = kept
	l.mu.Unlock()
	return ov, diags
}

// overlayNames are the overlays of files, sorted (isOverlay parses each candidate: once).
func overlayNames(files map[string][]byte) []string {
	var names []string
	for name, b := range files {
		if isOverlay(b) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// withoutOverlays is files but names.
func withoutOverlays(files map[string][]byte, names []string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for name, b := range files {
		if !slices.Contains(names, name) {
			out[name] = b
		}
	}
	return out
}

// overlayCache is the Loader's last overlay result.
type overlayCache struct {
	key       [32]byte
	rewritten map[string][]byte
	origins   map[string][]origin
	diags     Diagnostics
}

// remap points diagnostics of overlaid descriptions at the file and line they come from.
func (o overlaid) remap(diags Diagnostics) {
	for i, d := range diags {
		lines, ok := o.origins[d.File]
		if !ok || d.Line <= 0 || d.Line >= len(lines) || lines[d.Line].file == "" {
			continue
		}
		diags[i].File, diags[i].Line = lines[d.Line].file, lines[d.Line].line
	}
}

// unknownActionKey is a key of an action mapping that the Overlay specification does not
// define (extensions x-… aside): a misspelt update must not pass for an empty one.
func unknownActionKey(action *yaml.Node) string {
	for i := 0; i+1 < len(action.Content); i += 2 {
		switch k := action.Content[i].Value; {
		case k == "target", k == "description", k == "update", k == "remove", strings.HasPrefix(k, "x-"):
		default:
			return k
		}
	}
	return ""
}

// merge applies an update to node as the Overlay specification says: objects merge key by
// key, arrays append, anything else is replaced. Every node written gets the origin of the
// overlay node it comes from.
func merge(node, update *yaml.Node, from func(*yaml.Node) origin, origins map[*yaml.Node]origin) {
	if update.Kind == yaml.DocumentNode && len(update.Content) == 1 {
		update = update.Content[0]
	}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		// An update to an alias changes this place only: a copy of what it names, merged.
		*node = *copyNode(node.Alias, func(n *yaml.Node) origin { return origins[n] }, origins)
	}
	if node.Kind != update.Kind || node.Kind == yaml.ScalarNode || node.Kind == yaml.AliasNode {
		*node = *copyNode(update, from, origins)
		origins[node] = from(update)
		return
	}
	switch node.Kind {
	case yaml.MappingNode:
	next:
		for i := 0; i+1 < len(update.Content); i += 2 {
			k, v := update.Content[i], update.Content[i+1]
			for j := 0; j+1 < len(node.Content); j += 2 {
				if node.Content[j].Value == k.Value {
					merge(node.Content[j+1], v, from, origins)
					continue next
				}
			}
			node.Content = append(node.Content, copyNode(k, from, origins), copyNode(v, from, origins))
		}
	case yaml.SequenceNode:
		for _, v := range update.Content {
			node.Content = append(node.Content, copyNode(v, from, origins))
		}
	}
}

// copyNode is a deep copy of an overlay's node, each copy recorded with its origin.
func copyNode(n *yaml.Node, from func(*yaml.Node) origin, origins map[*yaml.Node]origin) *yaml.Node {
	c := *n
	c.Content = nil
	for _, child := range n.Content {
		c.Content = append(c.Content, copyNode(child, from, origins))
	}
	origins[&c] = from(n)
	return &c
}

// removeNode takes n out of its parent: a mapping's key and value, or a sequence's item.
func removeNode(root, n *yaml.Node) {
	walkNodes(root, func(p *yaml.Node) {
		for i, c := range p.Content {
			if c != n {
				continue
			}
			if p.Kind == yaml.MappingNode && i%2 == 1 {
				p.Content = slices.Delete(p.Content, i-1, i+1)
			} else {
				p.Content = slices.Delete(p.Content, i, i+1)
			}
			return
		}
	})
}

func walkNodes(n *yaml.Node, f func(*yaml.Node)) {
	f(n)
	for _, c := range n.Content {
		walkNodes(c, f)
	}
}

// lockstep walks two trees of the same shape together.
func lockstep(a, b *yaml.Node, f func(a, b *yaml.Node)) {
	f(a, b)
	for i := 0; i < len(a.Content) && i < len(b.Content); i++ {
		lockstep(a.Content[i], b.Content[i], f)
	}
}

// keyLine is the line of a top-level key of a YAML document (0: absent).
func keyLine(doc *yaml.Node, key string) int {
	m := doc
	if m.Kind == yaml.DocumentNode && len(m.Content) == 1 {
		m = m.Content[0]
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return 0
}

// yamlSeq is the items of a top-level sequence of a YAML document.
func yamlSeq(doc *yaml.Node, key string) []*yaml.Node {
	m := doc
	if m.Kind == yaml.DocumentNode && len(m.Content) == 1 {
		m = m.Content[0]
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1].Content
		}
	}
	return nil
}
