package compiler

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/specgate/specgate/compiler/ir"
)

// joinBase puts basePath in front of an OpenAPI path; "/" under /orders is /orders itself.
func joinBase(base, path string) string {
	if base != "" && path == "/" {
		return base
	}
	return base + path
}

func parseBackend(s string) (ir.Backend, error) {
	if s == "" {
		return ir.Backend{}, fmt.Errorf("missing (http://host:port or https://host:port)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return ir.Backend{}, fmt.Errorf("%q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ir.Backend{}, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.RawPath != "" {
		return ir.Backend{}, fmt.Errorf("%q: must be scheme://host[:port][/path] with no user, query or escaped path", s)
	}
	b := ir.Backend{TLS: u.Scheme == "https", Host: u.Hostname(), Port: 80, PathPrefix: strings.TrimRight(u.Path, "/")}
	if t, err := ir.ParseTemplate(cmp.Or(b.PathPrefix, "/")); err != nil || t.Templated() {
		return ir.Backend{}, fmt.Errorf("%q: the path must be literal, without // or {}", s)
	}
	if b.TLS {
		b.Port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return ir.Backend{}, fmt.Errorf("%q: invalid port", s)
		}
		b.Port = uint32(n)
	}
	if strings.ContainsAny(b.Host, "_ ") && net.ParseIP(b.Host) == nil {
		return ir.Backend{}, fmt.Errorf("%q: invalid host", s)
	}
	return b, nil
}

// resolved is the effective value of every overridable key.
type resolved struct {
	exposure ir.Exposure
	timeout  time.Duration
	headers  []string
	limits   []ir.RateLimit
}

func resolveOverrides(file string, line int, where string, e operationExt, r *resolved, diags *Diagnostics) {
	errorf := func(format string, a ...any) { diags.add(Error, file, line, where, format, a...) }
	if e.Exposure != nil {
		switch x := ir.Exposure(*e.Exposure); x {
		case ir.Public, ir.Internal:
			r.exposure = x
		default:
			errorf("x-specgate.exposure %q: must be public or internal", *e.Exposure)
		}
	}
	if e.Timeout != nil {
		d, err := time.ParseDuration(*e.Timeout)
		if err != nil || d <= 0 {
			errorf("x-specgate.timeout %q: must be a positive duration like 15s", *e.Timeout)
		}
		r.timeout = d
	}
	if e.AllowedHeaders != nil {
		r.headers = nil
		for _, h := range *e.AllowedHeaders {
			if !ir.ValidHeaderName(h) {
				errorf("x-specgate.allowedHeaders: %q is not a header name", h)
				continue
			}
			if strings.HasPrefix(strings.ToLower(h), "x-specgate-") {
				errorf("x-specgate.allowedHeaders: %q: X-Specgate-* headers are the gateway's own", h)
				continue
			}
			r.headers = append(r.headers, strings.ToLower(h))
		}
		slices.Sort(r.headers)
		r.headers = slices.Compact(r.headers)
	}
	if e.RateLimits != nil {
		r.limits = nil
		for i, l := range *e.RateLimits {
			rl := ir.RateLimit{Per: ir.Unit(l.Per), Key: ir.KeyKind(l.Key)}
			if l.Requests > 0 && l.Requests <= 1<<31 {
				rl.Requests = uint32(l.Requests)
			}
			if name, ok := strings.CutPrefix(l.Key, "header:"); ok {
				rl.Key, rl.Header = ir.KeyHeader, name
			} else if name, ok := strings.CutPrefix(l.Key, "header+client:"); ok {
				rl.Key, rl.Header = ir.KeyHeaderClient, name
			}
			if l.Requests <= 0 {
				errorf("x-specgate.rateLimits[%d]: requests must be > 0, got %d", i, l.Requests)
				continue
			}
			if err := rl.Validate(); err != nil {
				errorf("x-specgate.rateLimits[%d]: %v (per: second|minute|hour|day; key: route|client|ip|header:<Name>|header+client:<Name>)", i, err)
				continue
			}
			r.limits = append(r.limits, rl)
		}
	}
}
