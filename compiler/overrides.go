package compiler

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

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
