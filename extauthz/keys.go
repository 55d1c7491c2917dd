package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/specgate/specgate/internal/tracing"
)

// keySource serves the signing keys of each trusted issuer from jwx's cache, which
// refreshes them in the background: as often as the JWKS response's Cache-Control max-age
// says, between minInterval and an hour (minInterval when it says no-cache or nothing). A kid
// the cache does not know triggers a forced refresh, at most one per issuer per cooldown, so
// a flood of forged kids cannot hammer the IdP nor keep a real new key out for longer.
type keySource struct {
	cache       *jwk.Cache
	client      *http.Client
	cooldown    time.Duration
	minInterval time.Duration
	wait        time.Duration // longest a Check waits for a forced refresh
	log         *slog.Logger
	m           *metrics
	tracer      trace.Tracer
	// ctx ends with close or the server's context: scheduled and running forced fetches give up.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	urls map[string]*httprc.ResourceBase[jwk.Set] // one resource per JWKS URL
}

// issuerKeys is the key state of one issuer.
type issuerKeys struct {
	issuer string
	src    *keySource
	res    atomic.Pointer[httprc.ResourceBase[jwk.Set]]

	mu         sync.Mutex
	lastForced time.Time
	inflight   chan struct{} // closed when the scheduled or running forced refresh ends
	configured string        // jwksUri from gateway.yaml; empty: OIDC discovery
	// waiting counts the Checks waiting for a forced fetch; beyond maxWaiting the others
	// answer at once, so a flood of made-up kids cannot hold Envoy's requests to authz open.
	waiting atomic.Int32
}

// newKeySource: a Check waits for a forced refresh at most wait; the refresh itself goes on in
// the background.
func newKeySource(ctx context.Context, client *http.Client, cooldown, minInterval, wait time.Duration, m *metrics, log *slog.Logger) (*keySource, error) {
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		return nil, fmt.Errorf("jwks cache: %w", err)
	}
	fctx, cancel := context.WithCancel(ctx)
	return &keySource{cache: cache, client: client, cooldown: cooldown, minInterval: minInterval, wait: wait,
		log: log, m: m, tracer: tracing.Off, ctx: fctx, cancel: cancel,
		urls: map[string]*httprc.ResourceBase[jwk.Set]{}}, nil
}

func (s *keySource) close() {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.cache.Shutdown(ctx)
}

// add starts tracking an issuer. It never waits for the network: an IdP that is down at
// start only makes its tokens fail with 401 until it answers.
func (s *keySource) add(ctx context.Context, issuer, jwksURI string) *issuerKeys {
	ik := &issuerKeys{issuer: issuer, src: s, configured: jwksURI}
	if jwksURI != "" {
		if err := ik.register(ctx, jwksURI); err != nil {
			s.log.Error("jwks register", "issuer", issuer, "err", err)
		}
	} else {
		go func() {
			// First discovery in the background; later attempts ride on forced refreshes.
			ik.ForceRefresh(ctx)
		}()
	}
	return ik
}

func (ik *issuerKeys) register(ctx context.Context, u string) error {
	s := ik.src
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.urls[u]; ok {
		ik.res.Store(r)
		return nil
	}
	cl := &countingClient{c: s.client, issuer: ik.issuer, m: s.m}
	err := s.cache.Register(ctx, u, jwk.WithWaitReady(false), jwk.WithHTTPClient(cl),
		jwk.WithMinInterval(s.minInterval), jwk.WithMaxInterval(time.Hour))
	if err != nil {
		return err
	}
	r, err := s.cache.LookupResource(ctx, u)
	if err != nil {
		return err
	}
	s.urls[u] = r
	ik.res.Store(r)
	return nil
}

// Keys is the current key set, nil before the first successful fetch. An atomic load: the
// hot path never goes through the cache's controller goroutine.
func (ik *issuerKeys) Keys() jwk.Set {
	if r := ik.res.Load(); r != nil {
		return r.Resource()
	}
	return nil
}

// maxWaiting bounds the Checks of one issuer that wait for a forced fetch.
const maxWaiting = 32

// ForceRefresh fetches the issuer's keys as soon as the cooldown since the last forced fetch
// allows: at once, or when the cooldown ends. Callers meanwhile share that one fetch; up to
// maxWaiting of them wait for it, at most ctx and s.wait, the others answer with the keys held.
// The fetch runs detached from the callers, so it completes for later requests even when
// they give up. So a kid first seen at time t is in the keys by t + cooldown + the fetch time,
// however many made-up kids arrive, and the IdP sees at most one forced fetch per cooldown.
func (ik *issuerKeys) ForceRefresh(ctx context.Context) jwk.Set {
	s := ik.src
	ctx, span := tracing.Child(ctx, s.tracer, "authz.jwks_wait", trace.WithAttributes(attribute.String("specgate.token.issuer", ik.issuer)))
	defer span.End()
	ik.mu.Lock()
	ch := ik.inflight
	if ch == nil {
		ch = make(chan struct{})
		ik.inflight = ch
		// The fetch outlives this Check, but belongs in its trace (when it is traced).
		go ik.forcedFetch(trace.SpanContextFromContext(ctx), max(0, s.cooldown-time.Since(ik.lastForced)), ch)
	}
	ik.mu.Unlock()
	if ik.waiting.Add(1) > maxWaiting {
		ik.waiting.Add(-1)
		return ik.Keys()
	}
	defer ik.waiting.Add(-1)
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
	}
	return ik.Keys()
}

// forcedFetch waits delay, fetches, and closes ch; its span's parent is the Check's that asked.
func (ik *issuerKeys) forcedFetch(parent trace.SpanContext, delay time.Duration, ch chan struct{}) {
	s := ik.src
	defer close(ch)
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
	ik.mu.Lock()
	ik.lastForced = time.Now()
	ik.mu.Unlock()
	fctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(s.ctx, parent), 10*time.Second)
	defer cancel()
	// Not tracing.Child: the parent is the asking Check's span context, not a live span.
	fctx, span := s.tracer.Start(fctx, "authz.jwks_fetch", trace.WithAttributes(attribute.String("specgate.token.issuer", ik.issuer)))
	err := ik.refresh(fctx)
	if err != nil && s.ctx.Err() == nil {
		s.log.Warn("jwks forced refresh failed", "issuer", ik.issuer, "err", err)
		span.SetStatus(codes.Error, err.Error()) // a span that records nothing ignores it
	}
	span.End()
	ik.mu.Lock()
	ik.inflight = nil
	ik.mu.Unlock()
}

func (ik *issuerKeys) refresh(ctx context.Context) error {
	if ik.res.Load() == nil {
		u := ik.configured
		if u == "" {
			var err error
			if u, err = ik.discover(ctx); err != nil {
				return err
			}
		}
		if err := ik.register(ctx, u); err != nil {
			return err
		}
	}
	_, err := ik.src.cache.Refresh(ctx, ik.res.Load().URL())
	return err
}

// discover reads jwks_uri from the issuer's OpenID configuration.
func (ik *issuerKeys) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(ik.issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := ik.src.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oidc discovery %s: status %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("oidc discovery %s: %w", u, err)
	}
	// OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
	if doc.Issuer != ik.issuer {
		return "", fmt.Errorf("oidc discovery %s: the document names issuer %q, gateway.yaml trusts %q: they must be equal, trailing slash included",
			u, doc.Issuer, ik.issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery %s: no jwks_uri", u)
	}
	return doc.JWKSURI, nil
}

// countingClient counts JWKS fetches by result for the metrics.
type countingClient struct {
	c      *http.Client
	issuer string
	m      *metrics
}

func (c *countingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.c.Do(req)
	result := "ok"
	if err != nil || resp.StatusCode != http.StatusOK {
		result = "error"
	} else {
		c.m.jwksLastOK.With(prometheus.Labels{"issuer": c.issuer}).SetToCurrentTime()
	}
	c.m.jwksRefresh.With(prometheus.Labels{"issuer": c.issuer, "result": result}).Inc()
	return resp, err
}
