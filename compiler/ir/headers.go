package ir

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// A tokenless route (RouteTokenless) removes in Envoy every client header that its Forward
// list does not name, with the regex HeaderRule(Forward): Plan refuses a list whose rule is
// past what Envoy accepts, naming the operation, before translation builds it.

// MaxRegexProgram is the RE2 program size Envoy accepts (the bootstrap's runtime raises
// Envoy's default of 100 to it). A HeaderRule may use half of it: Go's count, which Plan
// checks, and RE2's differ a little.
const MaxRegexProgram = 1 << 15

// HeaderRule is an anchored RE2 regex matching every header name except keep's (lower
// case) and the pseudo-headers (":path"...). RE2 has no negative lookahead, so it walks
// keep's trie: at each node a name either ends where no kept name does, leaves the trie with
// a byte no kept name has there, or goes on into a child. Its program is some hundreds of
// instructions, past Envoy's default limit of 100 (bootstrap runtime raises it).
func HeaderRule(keep []string) string {
	root := &trieNode{}
	for _, name := range keep {
		root.add(name)
	}
	var b strings.Builder
	b.WriteByte('^')
	root.other(&b, true)
	b.WriteByte('$')
	return b.String()
}

type trieNode struct {
	end  bool
	next map[byte]*trieNode
}

func (n *trieNode) add(s string) {
	for i := 0; i < len(s); i++ {
		if n.next == nil {
			n.next = map[byte]*trieNode{}
		}
		c := n.next[s[i]]
		if c == nil {
			c = &trieNode{}
			n.next[s[i]] = c
		}
		n = c
	}
	n.end = true
}

// other writes the alternatives for the rest of a name that is not kept, from node n.
func (n *trieNode) other(b *strings.Builder, root bool) {
	next := make([]byte, 0, len(n.next))
	for c := range n.next {
		next = append(next, c)
	}
	slices.Sort(next)
	b.WriteString("(?:")
	if !n.end && !root {
		b.WriteString("|") // ends here, where no kept name does (never empty: not at the root)
	}
	if len(next) == 0 && !root {
		b.WriteString(".+") // goes on past a kept name's end
	} else {
		b.WriteString("[^") // leaves the trie here; pseudo-headers (":path") stay
		if root {
			b.WriteString(`\x3a`)
		}
		for _, c := range next {
			if isAlnum(c) {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(b, `\x%02x`, c) // "-" would make a range
			}
		}
		b.WriteString("].*")
	}
	for _, c := range next {
		b.WriteByte('|')
		b.WriteString(regexp.QuoteMeta(string(c)))
		n.next[c].other(b, false)
	}
	b.WriteByte(')')
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// programSize is the size of rx compiled by Go's RE2 implementation.
func programSize(rx string) int {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return math.MaxInt
	}
	p, err := syntax.Compile(re.Simplify())
	if err != nil {
		return math.MaxInt
	}
	return len(p.Inst)
}
