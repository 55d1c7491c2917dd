package compiler

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/config"
)

// An override key is an x-specgate key that a service sets for every operation and that an
// operation may override (docs/vocabulary.md, Operation level). overrideKeys is the one list
// of them: decoding, the override of the service's value, the security diff and the docs' key
// list all read it, and TestOverrideKeys fails when one of them misses a key. Adding a key is
// an entry here, its ir.Operation field, and what translate makes of that field.
type overrideKey struct {
	name string
	// set decodes the key's value (decoded YAML or JSON) into o, reporting each problem
	// through errorf; the value is the service's, or the operation's own override.
	set func(v any, o *ir.Operation, errorf func(format string, a ...any))
	// diff describes what changed between two versions of an operation: add's risk marks a
	// change that widens access. It adds nothing when the key's value is the same.
	diff func(old, new *ir.Operation, add func(risk bool, format string, a ...any))
}

var overrideKeys = []overrideKey{{
	name: "exposure",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		s, ok := v.(string)
		if x := ir.Exposure(s); ok && (x == ir.Public || x == ir.Internal) {
			o.Exposure = x
			return
		}
		errorf("x-specgate.exposure %s: must be public or internal", quoteValue(v))
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		if old.Exposure == ir.Internal && new.Exposure == ir.Public {
			add(true, "became public")
		} else if old.Exposure != new.Exposure {
			add(false, "became %s", new.Exposure)
		}
	},
}, {
	name: "timeout",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errorf("x-specgate.timeout %s: must be a positive duration like 15s", quoteValue(v))
		}
		o.Timeout = d
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		if old.Timeout != new.Timeout {
			add(false, "timeout %s → %s", old.Timeout, new.Timeout)
		}
	},
}, {
	name: "allowedHeaders",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		var names []string
		if err := decodeExt(v, &names); err != nil {
			errorf("x-specgate.allowedHeaders: %s, where a list of header names is wanted", typeOf(v))
			return
		}
		o.AllowedHeaders = nil
		for _, h := range names {
			if !ir.ValidHeaderName(h) {
				errorf("x-specgate.allowedHeaders: %q is not a header name", h)
				continue
			}
			if strings.HasPrefix(strings.ToLower(h), "x-specgate-") {
				errorf("x-specgate.allowedHeaders: %q: X-Specgate-* headers are the gateway's own", h)
				continue
			}
			o.AllowedHeaders = append(o.AllowedHeaders, strings.ToLower(h))
		}
		slices.Sort(o.AllowedHeaders)
		o.AllowedHeaders = slices.Compact(o.AllowedHeaders)
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		h := missing(new.AllowedHeaders, old.AllowedHeaders)
		if len(h) == 0 {
			return
		}
		// The user's token or session: the backend could replay it against every service
		// that accepts the same audience.
		creds := slices.DeleteFunc(slices.Clone(h), func(name string) bool {
			return !strings.EqualFold(name, "Authorization") && !strings.EqualFold(name, "Cookie")
		})
		if len(creds) > 0 {
			add(true, "credentials now forwarded to the backend: %s", strings.Join(creds, ", "))
		}
		if rest := slices.DeleteFunc(h, func(name string) bool { return slices.Contains(creds, name) }); len(rest) > 0 {
			add(false, "headers now forwarded: %s", strings.Join(rest, ", "))
		}
	},
}, {
	name: "rateLimits",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		list, ok := v.([]any)
		if !ok {
			errorf("x-specgate.rateLimits: %s, where a list of {requests, per, key} is wanted", typeOf(v))
			return
		}
		o.RateLimits = nil
		for i, item := range list {
			var l rateLimitExt
			if err := decodeExt(item, &l); err != nil {
				errorf("x-specgate.rateLimits[%d]: %s", i, strings.TrimPrefix(err.Error(), "x-specgate: "))
				continue
			}
			rl := ir.RateLimit{Per: ir.Unit(l.Per), Key: ir.KeyKind(l.Key)}
			if l.Requests > 0 && l.Requests <= 1<<31 {
				rl.Requests = uint32(l.Requests)
			}
			if name, ok := strings.CutPrefix(l.Key, "header:"); ok {
				rl.Key, rl.Header = ir.KeyHeader, name
			} else if name, ok := strings.CutPrefix(l.Key, "header+client:"); ok {
				rl.Key, rl.Header = ir.KeyHeaderClient, name
			}
			switch {
			case l.Plans != nil && l.Requests != 0:
				errorf("x-specgate.rateLimits[%d]: requests or plans, not both", i)
				continue
			case l.Plans != nil:
				rl.Plans = &ir.Plans{Limits: map[string]uint32{}}
				if l.Plans.Default > 0 && l.Plans.Default <= 1<<31 {
					rl.Plans.Default = uint32(l.Plans.Default)
				}
				for name, n := range l.Plans.Limits {
					if n > 0 && n <= 1<<31 {
						rl.Plans.Limits[name] = uint32(n)
					} else {
						rl.Plans.Limits[name] = 0 // Validate names it
					}
				}
			case l.Requests <= 0:
				errorf("x-specgate.rateLimits[%d]: requests must be > 0, got %d", i, l.Requests)
				continue
			}
			if err := rl.Validate(); err != nil {
				errorf("x-specgate.rateLimits[%d]: %v (per: second|minute|hour|day; key: route|client|ip|header:<Name>|header+client:<Name>; plans: {limits: {<plan>: n}, default: n})", i, err)
				continue
			}
			o.RateLimits = append(o.RateLimits, rl)
		}
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		for _, l := range loosened(old.RateLimits, new.RateLimits) {
			add(true, "%s", l)
		}
	},
}, {
	name: "maxRequestBodyBytes",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) || n < 1 || n > config.MaxRequestBodyLimit {
			errorf("x-specgate.maxRequestBodyBytes %s: must be a whole number of bytes from 1 to %d", quoteValue(v), config.MaxRequestBodyLimit)
			return
		}
		o.MaxRequestBodyBytes = uint32(n)
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		if old.MaxRequestBodyBytes != new.MaxRequestBodyBytes {
			add(false, "body limit %s → %s", bodyLimit(old), bodyLimit(new))
		}
	},
}, {
	name: "validate",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		switch v {
		case "request":
			o.Validation = &ir.Validation{} // buildService locates the operation
		case "none":
			o.Validation = nil
		default:
			errorf("x-specgate.validate %s: must be request or none", quoteValue(v))
		}
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		switch {
		case old.Validation != nil && new.Validation == nil:
			add(true, "request validation off: the backend gets requests its description refuses")
		case old.Validation == nil && new.Validation != nil:
			add(false, "request validation on")
		}
	},
}, {
	name: "ipAllow",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		var cidrs []string
		if err := decodeExt(v, &cidrs); err != nil {
			errorf("x-specgate.ipAllow: %s, where a list of CIDRs is wanted", typeOf(v))
			return
		}
		o.IPAllow = nil
		for _, c := range cidrs {
			p, err := parseCIDR(c)
			if err != nil {
				errorf("x-specgate.ipAllow: %v", err)
				continue
			}
			o.IPAllow = append(o.IPAllow, p)
		}
		slices.Sort(o.IPAllow)
		o.IPAllow = slices.Compact(o.IPAllow)
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		switch {
		case len(new.IPAllow) == 0 && len(old.IPAllow) > 0:
			add(true, "IP allow list removed: every address may call it")
		case len(new.IPAllow) > 0 && len(old.IPAllow) == 0:
			add(false, "IP allow list added: %s", strings.Join(new.IPAllow, ", "))
		default:
			if wider := uncovered(new.IPAllow, old.IPAllow); len(wider) > 0 {
				add(true, "IP allow list widened: %s", strings.Join(wider, ", "))
			} else if !slices.Equal(old.IPAllow, new.IPAllow) {
				add(false, "IP allow list narrowed: %s", strings.Join(new.IPAllow, ", "))
			}
		}
	},
}, {
	name: "websocket",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		if on, ok := v.(bool); ok {
			o.WebSocket = nil
			if on {
				o.WebSocket = &ir.WebSocket{IdleTimeout: ir.DefaultWebSocketIdle, MaxDuration: ir.DefaultWebSocketMax}
			}
			return
		}
		var w struct {
			IdleTimeout string `json:"idleTimeout"`
			MaxDuration string `json:"maxDuration"`
		}
		if err := decodeExt(v, &w); err != nil {
			errorf("x-specgate.websocket: %s", strings.TrimPrefix(err.Error(), "x-specgate: "))
			return
		}
		ws := &ir.WebSocket{IdleTimeout: ir.DefaultWebSocketIdle, MaxDuration: ir.DefaultWebSocketMax}
		durations("x-specgate.websocket", "10m", errorf,
			durationField{"idleTimeout", w.IdleTimeout, &ws.IdleTimeout}, durationField{"maxDuration", w.MaxDuration, &ws.MaxDuration})
		o.WebSocket = ws
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		switch {
		case old.WebSocket == nil && new.WebSocket != nil:
			add(true, "WebSocket upgrades accepted: an open connection outlives its token's revocation, for up to %s", new.WebSocket.MaxDuration)
		case old.WebSocket != nil && new.WebSocket == nil:
			add(false, "WebSocket upgrades refused")
		case old.WebSocket != nil && *old.WebSocket != *new.WebSocket:
			add(new.WebSocket.MaxDuration > old.WebSocket.MaxDuration, "WebSocket idle timeout %s → %s, longest connection %s → %s",
				old.WebSocket.IdleTimeout, new.WebSocket.IdleTimeout, old.WebSocket.MaxDuration, new.WebSocket.MaxDuration)
		}
	},
}, {
	name: "retries",
	set: func(v any, o *ir.Operation, errorf func(string, ...any)) {
		if on, ok := v.(bool); ok && !on {
			o.Retries = nil
			return
		}
		var r struct {
			Attempts      int      `json:"attempts"`
			On            []string `json:"on"`
			PerTryTimeout string   `json:"perTryTimeout"`
			NonIdempotent bool     `json:"nonIdempotent"`
		}
		if err := decodeExt(v, &r); err != nil {
			errorf("x-specgate.retries: %s", strings.TrimPrefix(err.Error(), "x-specgate: "))
			return
		}
		rt := &ir.Retries{NonIdempotent: r.NonIdempotent, On: ir.DefaultRetryOn}
		if r.Attempts < 1 || r.Attempts > ir.MaxRetries {
			errorf("x-specgate.retries.attempts %d: must be 1 to %d (or retries: false)", r.Attempts, ir.MaxRetries)
			return
		}
		rt.Attempts = uint32(r.Attempts)
		if r.On != nil {
			rt.On = nil
			for _, c := range r.On {
				if !slices.Contains(ir.RetryConditions, c) {
					errorf("x-specgate.retries.on %q: must be one of %s", c, strings.Join(ir.RetryConditions, ", "))
					return
				}
				rt.On = append(rt.On, c)
			}
			slices.Sort(rt.On)
			rt.On = slices.Compact(rt.On)
		}
		if !durations("x-specgate.retries", "2s", errorf, durationField{"perTryTimeout", r.PerTryTimeout, &rt.PerTryTimeout}) {
			return
		}
		o.Retries = rt
	},
	diff: func(old, new *ir.Operation, add func(bool, string, ...any)) {
		switch {
		case old.Retries == nil && new.Retries != nil:
			add(false, "retries added: %s", new.Retries)
		case old.Retries != nil && new.Retries == nil:
			add(false, "retries removed")
		case old.Retries != nil && old.Retries.String() != new.Retries.String():
			add(false, "retries %s → %s", old.Retries, new.Retries)
		}
	},
}}

// parseCIDR reads a CIDR or a lone address (a /32 or /128) as its canonical prefix. A prefix
// with host bits set (10.0.0.1/8) is refused: it could mean the host or the network.
func parseCIDR(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String(), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither an address nor a CIDR", s)
	}
	if p.Masked() != p {
		return "", fmt.Errorf("%q has host bits set: write %s for the network or %s for the host", s, p.Masked(), p.Addr())
	}
	return p.String(), nil
}

// uncovered lists the prefixes of new that no prefix of old contains: the addresses a change
// lets in.
func uncovered(new, old []string) []string {
	var out []string
	for _, n := range new {
		np := netip.MustParsePrefix(n)
		if !slices.ContainsFunc(old, func(o string) bool {
			op := netip.MustParsePrefix(o)
			return op.Bits() <= np.Bits() && op.Contains(np.Addr())
		}) {
			out = append(out, n)
		}
	}
	return out
}

// durationField is an optional duration of an x-specgate object: its key, its value as
// written ("" when absent) and where it goes.
type durationField struct {
	name, value string
	into        *time.Duration
}

// durations stores each written field as a positive duration, reporting the others as
// key.name with an example; false when one was reported.
func durations(key, example string, errorf func(string, ...any), fields ...durationField) bool {
	ok := true
	for _, f := range fields {
		if f.value == "" {
			continue
		}
		d, err := time.ParseDuration(f.value)
		if err != nil || d <= 0 {
			errorf("%s.%s %q: must be a positive duration like %s", key, f.name, f.value, example)
			ok = false
			continue
		}
		*f.into = d
	}
	return ok
}

// bodyLimit shows an operation's body limit for the diff.
func bodyLimit(o *ir.Operation) string {
	if o.MaxRequestBodyBytes == 0 {
		return "the gateway's"
	}
	return fmt.Sprintf("%d bytes", o.MaxRequestBodyBytes)
}

// overrideKeyNames lists the names of overrideKeys, in the table's order.
func overrideKeyNames() []string {
	names := make([]string, len(overrideKeys))
	for i, k := range overrideKeys {
		names[i] = k.name
	}
	return names
}

// extObject is an x-specgate value as an object whose keys known lists, or the error to report.
func extObject(v any, known []string) (map[string]any, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("x-specgate: %s, where an object is wanted", typeOf(v))
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("x-specgate: unknown key %q%s", k, config.DidYouMean(k, known))
		}
	}
	return obj, nil
}

// applyOverrideKeys sets o from the operation keys of ext, in the table's order.
func applyOverrideKeys(ext map[string]any, o *ir.Operation, errorf func(string, ...any)) {
	for _, k := range overrideKeys {
		if v, ok := ext[k.name]; ok {
			k.set(v, o, errorf)
		}
	}
}

// typeOf names the kind of a decoded YAML or JSON value, for messages.
func typeOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// quoteValue shows a scalar value as it was written ("15s", 15, true), else its kind.
func quoteValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case map[string]any, []any, nil:
		return "(" + typeOf(v) + ")"
	default:
		return fmt.Sprint(x)
	}
}
