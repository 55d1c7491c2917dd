//go:build wasip1

// Command plugin is specgate authz inside Envoy: a proxy-wasm HTTP filter, built with the
// standard Go toolchain (make build), that allows a token request on its own when it can and
// leaves every other request to ext_authz, the authority. It decides with authz's own code
// (packages verify, revocation, policy), from the keys and revocations authz feeds it (package
// feed) every interval; with a feed older than staleAfter it decides nothing.
//
// It decides only on routes whose metadata carries policy.PluginFilter (the compiler puts it on
// token operations without API keys and rate limits, translate.pluginDecides). It never
// denies: a missing, invalid, revoked or insufficient token goes to ext_authz, which answers
// as without the plugin; so does a token its revocation filter may hold (revoked.go). An allow
// edits the headers as authz's does and sets the filter state that makes Envoy skip ext_authz.
package main

import (
	"context"
	"encoding/json"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/internal/proxywasm"
	"github.com/specgate/specgate/policy"
)

func main() {}

func init() { proxywasm.SetRoot(func(uint32) proxywasm.Root { return &root{} }) }

type root struct {
	cfg        feed.PluginConfig
	verifier   *verify.Verifier
	keys       map[string]*feed.IssuerKeys
	tokens     map[string]*verified
	tokenBytes int
	revoked    *revoked
	fullAt     time.Time                // when the last full feed answer came: one every fullEvery purges expired keys
	policies   map[string]*policy.Route // decoded route policies, by their encoding

	epoch    string
	seq      uint64
	asked    time.Time // when the call in flight was sent; zero: none in flight
	call     uint32    // its token: an answer to any other call is not taken
	freshAt  time.Time // when the last answered call was sent
	maxToken int
}

func (r *root) Configure(b []byte) bool {
	if err := json.Unmarshal(b, &r.cfg); err != nil {
		proxywasm.Log(proxywasm.LogError, "specgate plugin: configuration: "+err.Error())
		return false
	}
	r.keys = map[string]*feed.IssuerKeys{}
	r.verifier = verify.New(&r.cfg.Gateway, func(issuer, _ string) verify.Keys {
		k := &feed.IssuerKeys{}
		r.keys[issuer] = k
		return k
	}, proxywasm.Now)
	r.tokens = map[string]*verified{}
	// A collection stops the worker's requests: fewer of them for more memory (not measured
	// apart from the other changes of that commit).
	debug.SetGCPercent(400)
	r.revoked = newRevoked(nil, proxywasm.Now())
	r.policies = map[string]*policy.Route{}
	r.maxToken = r.cfg.Gateway.Authz.MaxTokenBytes
	return proxywasm.SetTickPeriod(r.cfg.Interval.Duration) == nil
}

func (r *root) Tick() {
	now := proxywasm.Now()
	if !r.asked.IsZero() && now.Sub(r.asked) < r.cfg.StaleAfter.Duration {
		return // one call at a time; one lost by the host is given up after staleAfter
	}
	call, err := proxywasm.HTTPCall(r.cfg.Cluster, [][2]string{
		{":method", "GET"}, {":path", feed.Path + feed.Query(r.epoch, r.seq)}, {":authority", "specgate-authz"},
		{"authorization", "Bearer " + r.cfg.Credential},
	}, nil, r.cfg.StaleAfter.Duration)
	if err != nil {
		proxywasm.Log(proxywasm.LogWarn, "specgate plugin: feed call: "+err.Error())
		return
	}
	r.asked, r.call = now, call
}

func (r *root) HTTPCallResponse(call uint32, headers, size int) {
	if call != r.call || r.asked.IsZero() {
		return // a call given up on: its data is older than its successor's send time says
	}
	asked := r.asked
	r.asked = time.Time{}
	if headers == 0 {
		return
	}
	if st, _ := proxywasm.CallResponseHeader(":status"); st != "200" {
		proxywasm.Log(proxywasm.LogWarn, "specgate plugin: feed answered "+st)
		return
	}
	body, err := proxywasm.CallResponseBody(size)
	var f feed.Feed
	if err == nil {
		err = json.Unmarshal(body, &f)
	}
	if err == nil {
		err = r.apply(&f)
	}
	if err != nil {
		proxywasm.Log(proxywasm.LogError, "specgate plugin: feed: "+err.Error())
		return
	}
	r.freshAt = asked
}

// fullEvery is how often a VM asks for the whole revocation set again, to drop from its filter
// the keys of entries that expired since.
const fullEvery = 10 * time.Minute

// apply takes in one feed answer: the keys (feed.SetKeys), the revocations added (or, for a
// full answer, a new filter of them put in place).
func (r *root) apply(f *feed.Feed) error {
	if err := feed.SetKeys(r.keys, f.Keys); err != nil {
		return err
	}
	now := proxywasm.Now()
	if f.Full {
		r.revoked, r.fullAt = newRevoked(f.Revocations, now), now
	} else {
		for _, e := range f.Revocations {
			r.revoked.add(e, now)
		}
	}
	r.epoch, r.seq = f.Epoch, f.Seq
	if r.revoked.full() || now.Sub(r.fullAt) > fullEvery {
		r.epoch = "" // the next answer is the whole set: a filter sized for it, expired keys gone
	}
	return nil
}

func (r *root) NewStream(uint32) proxywasm.Stream { return stream{r} }

type stream struct{ r *root }

func (s stream) Done() {}

// RequestHeaders allows the request when authz would, or leaves it to ext_authz.
// RequestHeaders allows the request when authz would, or leaves it to ext_authz. It asks
// the host for data twice (the route's policy, the headers): each such call costs a few µs
// in a Go module, as the host calls back into it to allocate.
func (s stream) RequestHeaders(int, bool) proxywasm.Action {
	r := s.r
	now := proxywasm.Now()
	if r.freshAt.IsZero() || now.Sub(r.freshAt) > r.cfg.StaleAfter.Duration {
		return proxywasm.Continue
	}
	raw, err := proxywasm.Property("xds", "route_metadata", "filter_metadata", policy.PluginFilter, policy.PluginPolicy)
	if err != nil || len(raw) == 0 {
		return proxywasm.Continue
	}
	pol := r.policy(string(raw))
	if pol == nil {
		return proxywasm.Continue
	}
	pairs, err := proxywasm.RequestHeaders()
	if err != nil {
		return proxywasm.Continue
	}
	var (
		path, auth string
		auths      int
	)
	for _, p := range pairs {
		switch p[0] {
		case ":path":
			path = p[1]
		case "authorization":
			auth, auths = p[1], auths+1
		}
	}
	if !pol.QueryToken && policy.HasQueryToken(path) {
		return proxywasm.Continue // authz refuses it
	}
	if auths != 1 {
		return proxywasm.Continue
	}
	v := r.identity(auth, now)
	if v == nil {
		return proxywasm.Continue
	}
	id := v.id
	if met, _ := id.Meets(pol.AnyOf); !met || r.revoked.mayHold(&v.locs, v.keys) {
		return proxywasm.Continue
	}
	// What authz's allow does (extauthz server.allow), with the same rule for the others.
	for i, h := range r.verifier.ClaimHeaders() {
		if id.Headers[i] != "" {
			proxywasm.SetRequestHeader(h.Lower, id.Headers[i])
		} else {
			proxywasm.RemoveRequestHeader(h.Lower)
		}
	}
	for _, p := range pairs { // a repeated header is removed twice: no harm
		if r.verifier.Dropped(pol, p[0]) {
			proxywasm.RemoveRequestHeader(p[0])
		}
	}
	proxywasm.SetProperty(policy.PluginAllowProperty, []byte("1"))
	return proxywasm.Continue
}

// identity is the verified identity of a bearer token, nil when authz must decide (any
// failure, a key not fed).
func (r *root) identity(auth string, now time.Time) *verified {
	tok, why := verify.SplitBearer(auth, r.maxToken)
	if why != "" {
		return nil
	}
	if v := r.tokens[tok]; v != nil && now.Before(v.id.Exp) && v.id.KeyHeld() {
		return v
	}
	tok = strings.Clone(tok) // a view of the host's answer (proxywasm.RequestHeaders)
	if verify.Syntax(tok) != "" {
		return nil
	}
	id, err := r.verifier.Verify(context.Background(), tok)
	if err != nil {
		return nil
	}
	id.Content = revocation.ContentHash(tok)
	if len(r.tokens) >= maxTokens || r.tokenBytes+len(tok) > maxTokenBytes {
		clear(r.tokens)
		r.tokenBytes = 0
	}
	v := &verified{id: id, keys: revocationKeys(id, revocation.TokenHash(tok))}
	r.tokens[tok], r.tokenBytes = v, r.tokenBytes+len(tok)
	return v
}

// verified is a verified token's identity and the keys that would revoke it, hashed.
type verified struct {
	id   *verify.Identity
	keys []string
	locs locations
}

// The verified tokens a VM keeps, keyed by the token itself: a hit costs a map lookup, no
// hash of the token (SHA-256 is slow in Wasm), and the map compares the whole token. When
// full, it starts over.
const (
	maxTokens     = 20_000
	maxTokenBytes = 16 << 20
)

func (r *root) policy(raw string) *policy.Route {
	if p, ok := r.policies[raw]; ok {
		return p
	}
	// What the compiler marks never has these; a policy that had would be authz's to decide.
	var p *policy.Route
	if d, err := policy.Decode(raw); err == nil && !d.Anonymous && len(d.RateLimitHeaders) == 0 &&
		!slices.ContainsFunc(d.AnyOf, func(q policy.Requirement) bool { return q.APIKey != nil }) {
		p = &d
	}
	if len(r.policies) > 50_000 {
		clear(r.policies)
	}
	r.policies[raw] = p
	return p
}
