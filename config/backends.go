package config

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
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
	// Deny lists host names, suffix patterns, IPs and CIDRs that are never backends, even when
	// Allow lists them: the gateway's own Services (its listeners, authz's revocation API, the
	// control plane's change API, the Redis of revocations). A spec routed there would relay
	// the public listener onto the internal one. Default: *.specgate.svc.cluster.local, the
	// namespace deploy/ runs the gateway in and nothing else.
	Deny []string `json:"deny"`
	// Resolve looks a backend's host name up at compile and push time (nil: the system's
	// resolver): a name that resolves to one of the gateway's own addresses is refused.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error) `json:"-"`
}

// metadataHosts are the names of cloud metadata servers (their address is link-local).
var metadataHosts = []string{"metadata.google.internal", "metadata.goog", "metadata"}

// metadataAddrs are metadata servers outside the link-local range: Alibaba Cloud's, and the
// IPv6 ones of AWS and Google Cloud.
var metadataAddrs = []netip.Addr{netip.MustParseAddr("100.100.100.200"), netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("fd20:ce::254")}

// ownAddr says what addr is when it reaches the gateway's own pod or the cloud's metadata
// server ("" otherwise).
func ownAddr(addr netip.Addr) string {
	switch {
	case addr.IsLoopback():
		return "a loopback address: the gateway's own pod (Envoy's admin, authz, the control plane)"
	case addr.IsUnspecified():
		return "the unspecified address, which reaches the gateway's own pod"
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		return "a link-local address (the cloud metadata server lives at 169.254.169.254)"
	case slices.Contains(metadataAddrs, addr):
		return "a cloud metadata server"
	}
	return ""
}

// lookups caches name resolution for a minute: a push compiles every service, and a resolver
// that does not answer must not make each push wait for each name.
var lookups sync.Map // host → lookup

type lookup struct {
	addrs []netip.Addr
	at    time.Time
}

func (b Backends) resolve(host string) []netip.Addr {
	if b.Resolve != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addrs, _ := b.Resolve(ctx, host)
		return addrs
	}
	if v, ok := lookups.Load(host); ok && time.Since(v.(lookup).at) < time.Minute {
		return v.(lookup).addrs
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host) // a name that does not resolve here may at run time
	lookups.Store(host, lookup{addrs, time.Now()})
	return addrs
}

// matches reports whether host (addr, when it is an IP) is one of the entries: names,
// *.suffix patterns, IPs and CIDRs.
func matches(entries []string, host string, addr netip.Addr, isIP bool) bool {
	for _, a := range entries {
		if isIP {
			if p, err := netip.ParsePrefix(a); err == nil && p.Contains(addr) {
				return true
			}
			if ip, err := netip.ParseAddr(a); err == nil && ip.Unmap() == addr {
				return true
			}
			continue
		}
		pat := strings.TrimSuffix(strings.ToLower(a), ".")
		if pat == host || strings.HasPrefix(pat, "*.") && strings.HasSuffix(host, pat[1:]) {
			return true
		}
	}
	return false
}

// Check returns why the gateway must not route to host (a name or an IP), or nil.
func (b Backends) Check(host string) error {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	addr, err := netip.ParseAddr(host)
	isIP := err == nil
	if isIP {
		addr = addr.Unmap()
	}
	if matches(b.Deny, host, addr, isIP) {
		return fmt.Errorf("%s is one of the gateway's own Services (gateway.yaml backends.deny): a spec routed there would reach the internal listener or an admin API from the public one", host)
	}
	allowed := matches(b.Allow, host, addr, isIP)
	var own string
	switch {
	case allowed:
	case isIP:
		own = ownAddr(addr)
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		own = "a loopback address: the gateway's own pod (Envoy's admin, authz, the control plane)"
	case slices.Contains(metadataHosts, host):
		own = "the cloud metadata server"
	}
	if own != "" {
		return fmt.Errorf("%s is %s; list it in gateway.yaml backends.allow if that is meant", host, own)
	}
	if !isIP {
		// A name is what it resolves to: a public name can point at 127.0.0.1.
		for _, a := range b.resolve(host) {
			a = a.Unmap()
			if what := ownAddr(a); what != "" && !matches(b.Allow, a.String(), a, true) {
				return fmt.Errorf("%s resolves to %s, %s; list that address in gateway.yaml backends.allow if that is meant", host, a, what)
			}
		}
	}
	if !allowed && len(b.Allow) > 0 {
		return fmt.Errorf("%s is not in gateway.yaml backends.allow", host)
	}
	return nil
}

// validate checks the entries' syntax.
func (b Backends) validate() []error {
	var errs []error
	for key, list := range map[string][]string{"allow": b.Allow, "deny": b.Deny} {
		for i, a := range list {
			if _, err := netip.ParsePrefix(a); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(a); err == nil {
				continue
			}
			name := strings.TrimPrefix(a, "*.")
			if name == "" || strings.ContainsAny(name, "*/:[] ") {
				errs = append(errs, fmt.Errorf("backends.%s[%d]: %q is not a host name, *.suffix, IP or CIDR", key, i, a))
			}
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
