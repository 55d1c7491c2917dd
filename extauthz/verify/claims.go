package verify

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/specgate/specgate/config"
)

// first is the first of names that tok carries, with its value.
func first(tok jwt.Token, names config.ClaimNames) (string, any, bool) {
	for _, n := range names {
		if !tok.Has(n) {
			continue
		}
		var v any
		if tok.Get(n, &v) == nil && v != nil && v != "" {
			return n, v, true
		}
	}
	return "", nil, false
}

// StringClaim reads the first of names that the token carries; it must be a string.
func StringClaim(tok jwt.Token, names config.ClaimNames) (string, error) {
	name, v, ok := first(tok, names)
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fail(ReasonInvalid, fmt.Errorf("claim %s is not a string", name))
	}
	// An identity with a line break could not be passed on as a header, but would still key
	// rate limits and logs: refused, not dropped.
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", fail(ReasonInvalid, fmt.Errorf("claim %s holds control characters", name))
	}
	return s, nil
}

// scopeClaim reads the first of names that the token carries: a space-separated string or an
// array of strings.
func scopeClaim(tok jwt.Token, names config.ClaimNames) ([]string, error) {
	name, v, ok := first(tok, names)
	if !ok {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fail(ReasonInvalid, fmt.Errorf("claim %s: not a string array", name))
			}
			out = append(out, s)
		}
		return oneScopeEach(name, out)
	case []string:
		return oneScopeEach(name, v)
	}
	return nil, fail(ReasonInvalid, fmt.Errorf("claim %s: not a string or array", name))
}

// oneScopeEach refuses an array element that is not exactly one scope: "orders:read admin"
// in one element would grant admin to a reader that splits it and not to one that does not.
func oneScopeEach(name string, scopes []string) ([]string, error) {
	for _, sc := range scopes {
		if sc == "" || strings.ContainsFunc(sc, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return nil, fail(ReasonInvalid, fmt.Errorf("claim %s: element %q is not one scope", name, sc))
		}
	}
	return scopes, nil
}

// headerValue renders a claim for an identity header; values that could split or smuggle
// a header are dropped.
func headerValue(tok jwt.Token, names config.ClaimNames) string {
	_, v, ok := first(tok, names)
	if !ok {
		return ""
	}
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(v)
	case time.Time:
		s = strconv.FormatInt(v.Unix(), 10)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	if len(s) > 1024 || strings.ContainsAny(s, "\r\n\x00") {
		return ""
	}
	return s
}
