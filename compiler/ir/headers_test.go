package ir

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/specgate/specgate/policy"
)

// HeaderRule must match exactly the names outside keep, pseudo-headers aside: a kept name
// it matched would be removed from every tokenless request, a name it missed would reach the
// backend past the allow-list. Checked on every prefix and extension of a kept name, which
// is where a trie-built regex goes wrong, and on random names.
func TestHeaderRuleMatchesExactlyTheOthers(t *testing.T) {
	keep := slices.Concat(policy.BaseHeaders, []string{"x-cart-id", "x-cart", "a", "x-1-2", "if-none-match", "x.dot", "x_under", "-lead"})
	re := regexp.MustCompile(HeaderRule(keep))
	names := []string{":path", ":authority", ":method", "x", "-", ".", "xx", "host:", "accepts", "acce", "content-", "x-cart-", "x-cart-idd", "x-1-3", "x-1", "xdot", "x-dot", "X-Cart-Id"}
	for _, k := range keep {
		for i := 1; i <= len(k); i++ {
			names = append(names, k[:i], k[:i]+"z", k[:i]+"-", k[:i]+".")
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._"
	for range 5000 {
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		want := !slices.Contains(keep, n) && !strings.HasPrefix(n, ":")
		if got := re.MatchString(n); got != want {
			t.Errorf("%q: removed %v, want %v", n, got, want)
		}
	}
	if n := programSize(HeaderRule(keep)); n > MaxRegexProgram/2 {
		t.Errorf("the rule for %d headers is %d instructions", len(keep), n)
	}
}
