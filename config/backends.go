package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Backends says where a spec may send traffic. A spec author writes any backend URL; without
// this policy `backend: http://127.0.0.1:9901` with `security: []` would publish Envoy's admin
// to the internet, and a link-local address the cloud's metadata server.
type Backends struct {
	// Allow lists host names ("orders.shop.svc.cluster.local"), suffix patterns
	// ("*.svc.cluster.local") and CIDRs ("10.0.0.0/8"). Empty: any host but the gateway's
	// own (loopback, link-local, unspecified, the metadata server). When set, only what it
	// lists; the gateway's own addresses only when listed themselves (127.0.0.1/32,
	// localhost), for a laptop or a sidecar.
	Allow []string `json:"allow"`
}

// metadataHosts are the names of cloud metadata servers (their address is link-local).
var metadataHosts = []string{"metadata.google.internal", "metadata.goog", "metadata"}

// Check returns why the gateway must not route to host (a name or an IP), or nil.
func (b Backends) Check(host string) error {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	addr, err := netip.ParseAddr(host)
	isIP := err == nil
	if isIP {
		addr = addr.Unmap()
	}
	for _, a := range b.Allow {
		if isIP {
			if p, err := netip.ParsePrefix(a); err == nil && p.Contains(addr) {
				return nil
			}
			if ip, err := netip.ParseAddr(a); err == nil && ip.Unmap() == addr {
				return nil
			}
			continue
		}
		pat := strings.ToLower(a)
		if pat == host || strings.HasPrefix(pat, "*.") && strings.HasSuffix(host, pat[1:]) {
			return nil
		}
	}
	var own string
	switch {
	case isIP && addr.IsLoopback(), !isIP && (host == "localhost" || strings.HasSuffix(host, ".localhost")):
		own = "a loopback address: the gateway's own pod (Envoy's admin, authz, the control plane)"
	case isIP && addr.IsUnspecified():
		own = "the unspecified address, which reaches the gateway's own pod"
	case isIP && (addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast()):
		own = "a link-local address (the cloud metadata server lives at 169.254.169.254)"
	case !isIP && slices.Contains(metadataHosts, host):
		own = "the cloud metadata server"
	}
	switch {
	case own != "":
		return fmt.Errorf("%s is %s; list it in gateway.yaml backends.allow if that is meant", host, own)
	case len(b.Allow) > 0:
		return fmt.Errorf("%s is not in gateway.yaml backends.allow", host)
	}
	return nil
}

// validate checks the entries' syntax.
func (b Backends) validate() []error {
	var errs []error
	for i, a := range b.Allow {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(a); err == nil {
			continue
		}
		name := strings.TrimPrefix(a, "*.")
		if name == "" || strings.ContainsAny(name, "*/:[] ") {
			errs = append(errs, fmt.Errorf("backends.allow[%d]: %q is not a host name, *.suffix, IP or CIDR", i, a))
		}
	}
	return errs
}
