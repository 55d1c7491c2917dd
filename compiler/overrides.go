package compiler

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
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

// circuitBreaker checks x-specgate.circuitBreaker.
func circuitBreaker(e *circuitBreakerExt, errorf func(string, ...any)) *ir.CircuitBreaker {
	if e == nil {
		return nil
	}
	cb := &ir.CircuitBreaker{}
	for _, f := range []struct {
		name string
		v    int
		into *uint32
	}{{"maxConnections", e.MaxConnections, &cb.MaxConnections}, {"maxPendingRequests", e.MaxPendingRequests, &cb.MaxPendingRequests}, {"maxRequests", e.MaxRequests, &cb.MaxRequests}} {
		if f.v < 0 || f.v > 1<<20 {
			errorf("x-specgate.circuitBreaker.%s %d: must be 1 to %d (0 or absent: Envoy's 1024)", f.name, f.v, 1<<20)
			continue
		}
		*f.into = uint32(f.v)
	}
	if e.RetryBudgetPercent < 0 || e.RetryBudgetPercent > 100 {
		errorf("x-specgate.circuitBreaker.retryBudgetPercent %g: must be 0 to 100", e.RetryBudgetPercent)
	}
	cb.RetryBudgetPercent = e.RetryBudgetPercent
	return cb
}

// outlierDetection checks x-specgate.outlierDetection; absent fields take the defaults.
func outlierDetection(e *outlierExt, errorf func(string, ...any)) *ir.OutlierDetection {
	if e == nil {
		return nil
	}
	od := &ir.OutlierDetection{Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 50}
	if e.Consecutive5xx < 0 || e.Consecutive5xx > 1000 {
		errorf("x-specgate.outlierDetection.consecutive5xx %d: must be 1 to 1000", e.Consecutive5xx)
	} else if e.Consecutive5xx > 0 {
		od.Consecutive5xx = uint32(e.Consecutive5xx)
	}
	if e.MaxEjectionPercent < 0 || e.MaxEjectionPercent > 100 {
		errorf("x-specgate.outlierDetection.maxEjectionPercent %d: must be 1 to 100", e.MaxEjectionPercent)
	} else if e.MaxEjectionPercent > 0 {
		od.MaxEjectionPercent = uint32(e.MaxEjectionPercent)
	}
	durations("x-specgate.outlierDetection", "10s", errorf,
		durationField{"interval", e.Interval, &od.Interval}, durationField{"baseEjectionTime", e.BaseEjectionTime, &od.BaseEjectionTime})
	return od
}
