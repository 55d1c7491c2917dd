package translate

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// YAML renders one message as block YAML with Envoy's field names, in field order.
//
// protojson's spacing is unstable on purpose, so its output is re-emitted token by token as
// YAML: one pass. Decoding it into maps and encoding those as YAML took 21 s and gigabytes
// for a 26,000-route bootstrap (docs/benchmarks.md).
func YAML(m proto.Message) ([]byte, error) {
	if b, ok := m.(*bootstrapv3.Bootstrap); ok && len(b.GetStaticResources().GetListeners()) > 1 {
		return bootstrapYAML(b)
	}
	var w yamlWriter
	if err := w.message(m, 0, false); err != nil {
		return nil, err
	}
	return w.out.Bytes(), nil
}

// bootstrapYAML renders a static bootstrap's listeners (with their routes, nearly all of it)
// on a core each, and the rest around them. The bytes are YAML(b)'s: listeners is the first
// field of static_resources, so it goes first under that key.
func bootstrapYAML(b *bootstrapv3.Bootstrap) ([]byte, error) {
	listeners := b.StaticResources.Listeners
	parts := make([]yamlWriter, len(listeners))
	errs := make([]error, len(listeners))
	var wg sync.WaitGroup
	for i, l := range listeners {
		wg.Go(func() { errs[i] = parts[i].message(l, 4, true) })
	}
	rest := &bootstrapv3.Bootstrap{}
	copyFields(b, rest, "static_resources")
	rest.StaticResources = &bootstrapv3.Bootstrap_StaticResources{}
	copyFields(b.StaticResources, rest.StaticResources, "listeners")
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var w yamlWriter
	w.inject = map[string]func(){"static_resources": func() {
		w.out.WriteString("  listeners:\n")
		for i := range parts {
			w.out.WriteString("  - ")
			w.out.Write(parts[i].out.Bytes())
			parts[i].out = bytes.Buffer{} // let it go before the next one is copied
		}
	}}
	size := 0
	for i := range parts {
		size += parts[i].out.Len()
	}
	w.out.Grow(size + size/8)
	if err := w.message(rest, 0, false); err != nil {
		return nil, err
	}
	return w.out.Bytes(), nil
}

// YAML renders every resource as one document with the keys listeners, routes, clusters and
// rate_limit_config.
func (r *Resources) YAML() ([]byte, error) {
	var w yamlWriter
	for _, part := range []struct {
		key string
		ms  []proto.Message
	}{
		{"listeners", toMessages(r.Listeners)},
		{"routes", toMessages(r.Routes)},
		{"clusters", toMessages(r.Clusters)},
		{"secrets", toMessages(r.Secrets)}, // files' names, never key material
		{"schemas", toMessages(r.Schemas)},
	} {
		if (part.key == "secrets" || part.key == "schemas") && len(part.ms) == 0 {
			continue // most gateways have none
		}
		w.out.WriteString(part.key + ":")
		if len(part.ms) == 0 {
			w.out.WriteString(" []\n")
			continue
		}
		w.out.WriteByte('\n')
		for _, m := range part.ms {
			w.out.WriteString("- ")
			if err := w.message(m, 2, true); err != nil {
				return nil, err
			}
		}
	}
	w.out.WriteString("rate_limit_config:\n  ")
	if err := w.message(r.RateLimit, 2, true); err != nil {
		return nil, err
	}
	return w.out.Bytes(), nil
}

func toMessages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// yamlWriter writes JSON values as block YAML: a mapping's keys one per line at its indent, a
// sequence's items as "- " at its parent key's indent, empty containers as {} and [].
type yamlWriter struct {
	out bytes.Buffer
	dec *jsontext.Decoder
	// inject writes lines rendered apart, first under a top-level key.
	inject map[string]func()
}

// message writes m as a mapping at indent; inline means its first key follows "- " or a
// key already written on the current line.
func (w *yamlWriter) message(m proto.Message, indent int, inline bool) error {
	j, err := jsonOpts.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	w.out.Grow(len(j) + len(j)/4) // block YAML is about the size of compact JSON plus indents
	// A bytes.Buffer is parsed in place, not copied; names are protojson's, never duplicated.
	w.dec = jsontext.NewDecoder(bytes.NewBuffer(j), jsontext.AllowDuplicateNames(true))
	if _, err := w.dec.ReadToken(); err != nil { // {
		return err
	}
	if w.dec.PeekKind() == '}' {
		w.out.WriteString("{}\n")
		_, err := w.dec.ReadToken()
		return err
	}
	return w.mapping(indent, inline)
}

// mapping writes the members up to the closing brace, whose opening brace was read.
func (w *yamlWriter) mapping(indent int, inline bool) error {
	for first := true; w.dec.PeekKind() != '}'; first = false {
		tok, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		if !first || !inline {
			w.indent(indent)
		}
		w.scalar(tok.String())
		w.out.WriteByte(':')
		if extra, ok := w.inject[tok.String()]; ok && indent == 0 {
			if err := w.injected(extra); err != nil {
				return err
			}
			continue
		}
		if err := w.value(indent, false); err != nil {
			return err
		}
	}
	_, err := w.dec.ReadToken()
	return err
}

// injected writes extra first in the top-level mapping that follows, then its own members.
func (w *yamlWriter) injected(extra func()) error {
	if _, err := w.dec.ReadToken(); err != nil { // {
		return err
	}
	w.out.WriteByte('\n')
	extra()
	return w.mapping(2, false)
}

// sequence writes the items up to the closing bracket, whose opening bracket was read.
func (w *yamlWriter) sequence(indent int) error {
	for w.dec.PeekKind() != ']' {
		w.indent(indent)
		w.out.WriteByte('-')
		if err := w.value(indent, true); err != nil {
			return err
		}
	}
	_, err := w.dec.ReadToken()
	return err
}

// value writes the next value after "key:" (item false) or "-" (item true).
func (w *yamlWriter) value(indent int, item bool) error {
	tok, err := w.dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case '{':
		if w.dec.PeekKind() == '}' {
			w.out.WriteString(" {}\n")
			_, err := w.dec.ReadToken()
			return err
		}
		if item {
			w.out.WriteByte(' ')
			return w.mapping(indent+2, true)
		}
		w.out.WriteByte('\n')
		return w.mapping(indent+2, false)
	case '[':
		if w.dec.PeekKind() == ']' {
			w.out.WriteString(" []\n")
			_, err := w.dec.ReadToken()
			return err
		}
		w.out.WriteByte('\n')
		if item {
			return w.sequence(indent + 2)
		}
		return w.sequence(indent)
	case '"':
		w.out.WriteByte(' ')
		w.scalar(tok.String())
	default: // number, true, false, null: the same in YAML
		w.out.WriteByte(' ')
		w.out.WriteString(tok.String())
	}
	w.out.WriteByte('\n')
	return nil
}

const spaces = "                                                                "

func (w *yamlWriter) indent(n int) {
	for ; n > len(spaces); n -= len(spaces) {
		w.out.WriteString(spaces)
	}
	w.out.WriteString(spaces[:n])
}

// plain reports whether YAML reads s back as the same string without quotes: [A-Za-z_/]
// then [A-Za-z0-9_./+@-]*, so no number, indicator or space, and no YAML 1.1 boolean or null.
func plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '/' ||
			i > 0 && ('0' <= c && c <= '9' || c == '.' || c == '+' || c == '@' || c == '-')
		if !ok {
			return false
		}
	}
	return len(s) > 5 || !yamlWords[strings.ToLower(s)]
}

var yamlWords = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
	"true": true, "false": true, "null": true}

// scalar writes s plain when that is safe, else as a double-quoted string (JSON's escapes are
// YAML's). Keys and values follow the same rule.
func (w *yamlWriter) scalar(s string) {
	if plain(s) {
		w.out.WriteString(s)
		return
	}
	b, _ := jsontext.AppendQuote(nil, s)
	w.out.Write(b)
}
