// Package redisurl reads the store URL both roles share (gateway.yaml revocation.store and
// rateLimit.store) into go-redis options, for every Redis topology users run:
//
//	redis://[user:pass@]host:port[/db]                 one server (Memorystore for Redis)
//	rediss://...                                       the same over TLS
//	redis+cluster://[user:pass@]h1:p1,h2:p2            Redis Cluster, Memorystore for Redis
//	                                                   Cluster, a Valkey cluster (seed nodes)
//	redis+sentinel://[user:pass@]master@h1:p1,h2:p2[/db]   Sentinel: the master's name, then
//	                                                   the sentinels
//
// rediss+cluster and rediss+sentinel use TLS. Query options: sentinelPassword and
// sentinelUsername (sentinel), tlsServerName and tlsCA (a PEM file of the CAs to trust
// instead of the system's, such as Memorystore's server CA). The client itself is go-redis's
// (NewUniversalClient picks a plain, cluster or failover client): no routing here.
//
// The credentials may name environment variables, so that gateway.yaml (a ConfigMap) holds
// no secret: ${NAME} in the user and password before the hosts, and in the sentinelPassword
// option, is replaced by the variable's value (deploy/ sets it from a Secret). Nowhere else:
// a host or a path never comes from the environment. An unset variable is an error.
package redisurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Topology is what kind of deployment a URL names.
type Topology string

const (
	Single   Topology = "single"
	Cluster  Topology = "cluster"
	Sentinel Topology = "sentinel"
)

// IsRedis reports whether store names a Redis store (any topology), not a file or memory.
func IsRedis(store string) bool {
	scheme, _, ok := strings.Cut(store, "://")
	base, _, _ := strings.Cut(scheme, "+")
	return ok && (base == "redis" || base == "rediss")
}

// Parse reads a store URL, its credentials from the environment and its tlsCA file, for a
// role that connects. Its errors never repeat the password.
func Parse(raw string) (*redis.UniversalOptions, Topology, error) {
	raw, err := expandCredentials(raw)
	if err != nil {
		return nil, "", err
	}
	return parse(raw, true)
}

// Check is Parse without the environment and the files: what gateway.yaml's validation can
// say wherever it runs (the control plane has neither the Secret nor the CA of the stores).
func Check(raw string) error {
	_, _, err := parse(envRef.ReplaceAllString(raw, "env"), false)
	return err
}

func parse(raw string, load bool) (*redis.UniversalOptions, Topology, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("store URL: %v", redact(err))
	}
	scheme, kind, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" {
		return nil, "", fmt.Errorf("store URL %s: scheme must be redis, rediss, redis+cluster or redis+sentinel", redacted(u))
	}
	o := &redis.UniversalOptions{}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if scheme == "rediss" {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Query().Get("tlsServerName")}
		if ca := u.Query().Get("tlsCA"); ca != "" && load {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, "", fmt.Errorf("store URL %s: tlsCA: %w", redacted(u), err)
			}
			o.TLSConfig.RootCAs = x509.NewCertPool()
			if !o.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, "", fmt.Errorf("store URL %s: tlsCA %s holds no PEM certificate", redacted(u), ca)
			}
		}
	} else if u.Query().Has("tlsCA") || u.Query().Has("tlsServerName") {
		return nil, "", fmt.Errorf("store URL %s: TLS options need rediss://", redacted(u))
	}
	hosts := u.Host
	top := Single
	switch kind {
	case "":
	case "cluster":
		top, o.IsClusterMode = Cluster, true
	case "sentinel":
		top = Sentinel
		// redis+sentinel://[user:pass@]master@h1,h2: url.Parse takes everything before the
		// last @ as userinfo, so the master's name is the end of it.
		var user string
		if u.User != nil {
			user = u.User.String()
		}
		user, _ = url.PathUnescape(user)
		creds, master, found := cutLast(user, "@")
		if !found {
			creds, master = "", user
		}
		if master == "" {
			return nil, "", fmt.Errorf("store URL %s: redis+sentinel needs the master's name: redis+sentinel://master@host:port,...", redacted(u))
		}
		o.Username, o.Password = "", ""
		if creds != "" {
			o.Username, o.Password, _ = strings.Cut(creds, ":")
		}
		o.MasterName = master
		o.SentinelUsername = u.Query().Get("sentinelUsername")
		o.SentinelPassword = u.Query().Get("sentinelPassword")
	default:
		return nil, "", fmt.Errorf("store URL %s: unknown topology %q (cluster or sentinel)", redacted(u), kind)
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, "", fmt.Errorf("store URL %s: %q is not host:port", redacted(u), h)
		}
		o.Addrs = append(o.Addrs, h)
	}
	if top == Single && len(o.Addrs) > 1 {
		return nil, "", fmt.Errorf("store URL %s: several hosts: write redis+cluster:// or redis+sentinel://master@", redacted(u))
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("store URL %s: database %q is not a number", redacted(u), db)
		}
		if top == Cluster && n != 0 {
			return nil, "", fmt.Errorf("store URL %s: a cluster has database 0 only", redacted(u))
		}
		o.DB = n
	}
	for k := range u.Query() {
		switch k {
		case "sentinelPassword", "sentinelUsername", "tlsServerName", "tlsCA":
		default:
			return nil, "", fmt.Errorf("store URL %s: unknown option %q", redacted(u), k)
		}
	}
	return o, top, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// envRef is a reference to an environment variable in a credential of a store URL.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandCredentials replaces the ${NAME} of the URL's user information and sentinelPassword
// option by the variables' values, escaped for their place.
func expandCredentials(raw string) (string, error) {
	var missing []string
	expand := func(s string, escape func(string) string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			v, ok := os.LookupEnv(ref[2 : len(ref)-1])
			if !ok {
				missing = append(missing, ref)
			}
			return escape(v)
		})
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw, nil
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		authority = expand(authority[:at], escapeUserinfo) + authority[at:]
	}
	if before, query, ok := strings.Cut(tail, "?"); ok {
		params := strings.Split(query, "&")
		for i, p := range params {
			if k, v, ok := strings.Cut(p, "="); ok && k == "sentinelPassword" {
				params[i] = k + "=" + expand(v, url.QueryEscape)
			}
		}
		tail = before + "?" + strings.Join(params, "&")
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("store URL: environment variable %s is not set", strings.Join(missing, ", "))
	}
	return scheme + "://" + authority + tail, nil
}

// escapeUserinfo percent-encodes all but RFC 3986's unreserved characters.
func escapeUserinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Redacted is a store URL fit for a log line: its password and sentinelPassword hidden (also
// a ${NAME}), and nothing at all of one that does not parse.
func Redacted(raw string) string {
	u, err := url.Parse(envRef.ReplaceAllString(raw, "env"))
	if err != nil {
		return "(a store URL that does not parse)"
	}
	return redacted(u)
}

func redacted(u *url.URL) string {
	q := u.Query()
	if q.Has("sentinelPassword") {
		q.Set("sentinelPassword", "xxxxx")
		c := *u
		c.RawQuery = q.Encode()
		u = &c
	}
	return u.Redacted()
}

// redact drops the URL net/url quotes in its errors, which may hold a password.
func redact(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// Reroute makes a cluster client reload its slot map after a failed call (a no-op for the
// other topologies). go-redis reloads it by itself on MOVED, but not when a master is
// unreachable: after a failover it would keep dialing the dead master until its periodic
// reload, a minute later. The reload runs in the background and is coalesced.
func Reroute(ctx context.Context, rdb redis.UniversalClient) {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
}
