package ir

import (
	"fmt"
	"regexp"
	"strings"
)

// Segment is one /-separated piece of a path template: literal text and {variable}s.
type Segment struct {
	Parts []Part
}

// Part is literal text, or a variable when Var is set.
type Part struct {
	Literal string
	Var     string
}

// Template is a parsed OpenAPI path template.
type Template struct {
	Raw      string
	Segments []Segment
}

var varName = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// ParseTemplate parses an OpenAPI path template such as /orders/{id}/items/{item}.json.
func ParseTemplate(path string) (Template, error) {
	t := Template{Raw: path}
	if !strings.HasPrefix(path, "/") {
		return t, fmt.Errorf("path %q must start with /", path)
	}
	if strings.ContainsAny(path, "?#") {
		return t, fmt.Errorf("path %q must not hold a query or fragment", path)
	}
	if path == "/" {
		return t, nil
	}
	seen := map[string]bool{}
	for i, raw := range strings.Split(path[1:], "/") {
		if raw == "" {
			if i == strings.Count(path, "/")-1 {
				// a trailing slash is a literal empty last segment
				t.Segments = append(t.Segments, Segment{})
				continue
			}
			return t, fmt.Errorf("path %q has an empty segment (//): Envoy merges slashes, so it could never match", path)
		}
		var seg Segment
		rest := raw
		for rest != "" {
			open := strings.IndexByte(rest, '{')
			closeAt := strings.IndexByte(rest, '}')
			if open < 0 {
				if closeAt >= 0 {
					return t, fmt.Errorf("path %q: unbalanced } in %q", path, raw)
				}
				seg.Parts = append(seg.Parts, Part{Literal: rest})
				break
			}
			if closeAt < open {
				return t, fmt.Errorf("path %q: unbalanced braces in %q", path, raw)
			}
			if open > 0 {
				seg.Parts = append(seg.Parts, Part{Literal: rest[:open]})
			}
			name := rest[open+1 : closeAt]
			if !varName.MatchString(name) {
				return t, fmt.Errorf("path %q: invalid variable name %q", path, name)
			}
			if seen[name] {
				return t, fmt.Errorf("path %q: variable %q appears twice", path, name)
			}
			seen[name] = true
			if n := len(seg.Parts); n > 0 && seg.Parts[n-1].Var != "" {
				return t, fmt.Errorf("path %q: variables {%s} and {%s} touch; Envoy cannot tell where one ends", path, seg.Parts[n-1].Var, name)
			}
			seg.Parts = append(seg.Parts, Part{Var: name})
			rest = rest[closeAt+1:]
		}
		t.Segments = append(t.Segments, seg)
	}
	return t, nil
}

// Templated reports whether the path has a variable.
func (t Template) Templated() bool {
	for _, s := range t.Segments {
		for _, p := range s.Parts {
			if p.Var != "" {
				return true
			}
		}
	}
	return false
}

// Shape is the template with variable names erased: two operations with the same method and
// shape collide whatever their parameters are called.
func (t Template) Shape() string {
	if len(t.Segments) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, s := range t.Segments {
		b.WriteByte('/')
		for _, p := range s.Parts {
			if p.Var != "" {
				b.WriteString("{}")
			} else {
				b.WriteString(p.Literal)
			}
		}
	}
	return b.String()
}

// Segment kinds, in the order matching tries them: plain text, text with variables
// ({name}.{ext}, v{n}), a lone variable ({id}). A lone variable matches whatever the others
// match, and text with variables some of what plain text does, so the more specific first.
const (
	segLiteral = iota
	segMixed
	segVariable
)

// kind is the segment kind of segment i.
func (t Template) kind(i int) int {
	s := t.Segments[i]
	switch {
	case len(s.Parts) == 0 || (len(s.Parts) == 1 && s.Parts[0].Var == ""):
		return segLiteral
	case len(s.Parts) == 1:
		return segVariable
	}
	return segMixed
}

// textLen is how many literal characters segment i has.
func (t Template) textLen(i int) int {
	n := 0
	for _, p := range t.Segments[i].Parts {
		n += len(p.Literal)
	}
	return n
}

// ComparePaths orders templates as OpenAPI matching wants them tried: at the first segment
// where they differ in kind, the more literal kind first (text, then text with variables,
// then a lone variable), and of two segments of text with variables, the one with more text
// ({x}.json before {a}.{b}); then the one with more literal segments; then the longer one;
// then by text. Concrete paths thus come before templated ones that would also match them
// (/orders/mine before /orders/{id}, /files/{name}.{ext} before /files/{id}).
func ComparePaths(a, b Template) int {
	for i := 0; i < len(a.Segments) && i < len(b.Segments); i++ {
		ka, kb := a.kind(i), b.kind(i)
		if ka != kb {
			return ka - kb
		}
		if ka == segMixed {
			if ta, tb := a.textLen(i), b.textLen(i); ta != tb {
				return tb - ta
			}
		}
	}
	if na, nb := a.literalCount(), b.literalCount(); na != nb {
		return nb - na
	}
	if len(a.Segments) != len(b.Segments) {
		return len(b.Segments) - len(a.Segments)
	}
	return strings.Compare(a.Raw, b.Raw)
}

func (t Template) literalCount() int {
	n := 0
	for i := range t.Segments {
		if t.kind(i) == segLiteral {
			n++
		}
	}
	return n
}

// Overlap tells whether two templates can match the same path while neither matches every
// path of the other — /a/{x}/c and /a/b/{y} both match /a/b/c — and gives such a path.
// Route order alone then decides which serves it.
func Overlap(a, b Template) (witness string, ambiguous bool) {
	if len(a.Segments) != len(b.Segments) || len(a.Segments) == 0 {
		return "", false
	}
	aIn, bIn := true, true // every path of a matches b; every path of b matches a
	for i := range a.Segments {
		ka, kb := a.kind(i), b.kind(i)
		switch {
		case ka == segLiteral && kb == segLiteral:
			if a.literal(i) != b.literal(i) {
				return "", false
			}
		case ka == segVariable && kb == segVariable:
		case ka == segLiteral:
			if kb == segMixed && !b.segmentRegex(i).MatchString(a.literal(i)) {
				return "", false
			}
			bIn = false
		case kb == segLiteral:
			if ka == segMixed && !a.segmentRegex(i).MatchString(b.literal(i)) {
				return "", false
			}
			aIn = false
		case ka == segVariable: // b is text with variables: the more specific here
			aIn = false
		case kb == segVariable:
			bIn = false
		default: // text with variables on both sides: the one with more text is tried first
			switch ta, tb := a.textLen(i), b.textLen(i); {
			case ta > tb:
				bIn = false
			case ta < tb:
				aIn = false
			case a.segmentRegex(i).String() != b.segmentRegex(i).String():
				aIn, bIn = false, false
			}
		}
	}
	if aIn || bIn {
		return "", false
	}
	// A path both match: at each segment the more literal side's text.
	var w strings.Builder
	for i := range a.Segments {
		w.WriteByte('/')
		if a.kind(i) <= b.kind(i) {
			w.WriteString(a.sample(i))
		} else {
			w.WriteString(b.sample(i))
		}
	}
	return w.String(), true
}

func (t Template) literal(i int) string {
	if len(t.Segments[i].Parts) == 0 {
		return ""
	}
	return t.Segments[i].Parts[0].Literal
}

// segmentRegex matches what segment i matches.
func (t Template) segmentRegex(i int) *regexp.Regexp {
	var b strings.Builder
	b.WriteByte('^')
	for _, p := range t.Segments[i].Parts {
		if p.Var != "" {
			b.WriteString("[^/]+")
		} else {
			b.WriteString(regexp.QuoteMeta(p.Literal))
		}
	}
	b.WriteByte('$')
	return regexp.MustCompile(b.String())
}

// sample is a value of segment i: its text, with x for each variable.
func (t Template) sample(i int) string {
	var b strings.Builder
	for _, p := range t.Segments[i].Parts {
		if p.Var != "" {
			b.WriteByte('x')
		} else {
			b.WriteString(p.Literal)
		}
	}
	return b.String()
}

// Matches reports whether path (no query) is one of the paths t matches.
func (t Template) Matches(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	segs := strings.Split(path[1:], "/")
	if path == "/" {
		segs = nil
	}
	if len(segs) != len(t.Segments) {
		return false
	}
	for i, s := range segs {
		switch t.kind(i) {
		case segLiteral:
			if s != t.literal(i) {
				return false
			}
		case segVariable:
			if s == "" {
				return false
			}
		default:
			if !t.segmentRegex(i).MatchString(s) {
				return false
			}
		}
	}
	return true
}

// Sample is one path t matches: its text, with x for each variable.
func (t Template) Sample() string {
	if len(t.Segments) == 0 {
		return "/"
	}
	var b strings.Builder
	for i := range t.Segments {
		b.WriteByte('/')
		b.WriteString(t.sample(i))
	}
	return b.String()
}
