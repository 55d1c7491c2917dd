package extauthz

import (
	"context"
	"encoding/json"
	"errors"
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
)

// keySource serves the signing keys of each trusted issuer from jwx's cache, which
// refreshes them in the background. A kid the cache does not know triggers one forced
// refresh per issuer per cooldown, so a flood of forged kids cannot hammer the IdP.
type keySource struct {
	cache    *jwk.Cache
	client   *http.Client
	cooldown time.Duration
	wait     time.Duration // longest a Check waits for a forced refresh
	log      *slog.Logger
	m        *metrics

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
	inflight   chan struct{} // closed when the running forced refresh ends
	configured string        // jwksUri from gateway.yaml; empty: OIDC discovery
}

// newKeySource: a Check waits for a forced refresh at most wait; the refresh itself goes on in
// the background.
func newKeySource(ctx context.Context, client *http.Client, cooldown, wait time.Duration, m *metrics, log *slog.Logger) (*keySource, error) {
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		return nil, fmt.Errorf("jwks cache: %w", err)
	}
	return &keySource{cache: cache, client: client, cooldown: cooldown, wait: wait,
		log: log, m: m, urls: map[string]*httprc.ResourceBase[jwk.Set]{}}, nil
}

func (s *keySource) close() {
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
			if _, err := ik.forceRefresh(ctx); err != nil {
				s.log.Warn("oidc discovery", "issuer", issuer, "err", err)
			}
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
		jwk.WithMinInterval(time.Minute), jwk.WithMaxInterval(time.Hour))
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

// keys is the current key set, nil before the first successful fetch. An atomic load: the
// hot path never goes through the cache's controller goroutine.
func (ik *issuerKeys) keys() jwk.Set {
	if r := ik.res.Load(); r != nil {
		return r.Resource()
	}
	return nil
}

var errRefreshCooldown = errors.New("jwks refresh rate-limited")

// forceRefresh fetches the issuer's keys now, unless a forced refresh started less than
// cooldown ago. Concurrent callers share one fetch; each waits at most ctx and s.wait.
// The fetch itself runs detached from the caller, so it completes for later requests even
// when this one gives up.
func (ik *issuerKeys) forceRefresh(ctx context.Context) (jwk.Set, error) {
	s := ik.src
	ik.mu.Lock()
	ch := ik.inflight
	if ch == nil {
		if time.Since(ik.lastForced) < s.cooldown {
			ik.mu.Unlock()
			return ik.keys(), errRefreshCooldown
		}
		ik.lastForced = time.Now()
		ch = make(chan struct{})
		ik.inflight = ch
		go func() {
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ik.refresh(fctx); err != nil {
				s.log.Warn("jwks forced refresh failed", "issuer", ik.issuer, "err", err)
			}
			ik.mu.Lock()
			ik.inflight = nil
			ik.mu.Unlock()
			close(ch)
		}()
	}
	ik.mu.Unlock()
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-t.C:
	}
	return ik.keys(), nil
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
	if doc.Issuer != ik.issuer || doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery %s: issuer %q / jwks_uri %q do not match", u, doc.Issuer, doc.JWKSURI)
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
