// Package config reads gateway.yaml, the configuration that every specgate role shares.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/specgate/specgate/internal/redisurl"
)

// Gateway is gateway.yaml; docs/gateway-yaml.md is its reference.
type Gateway struct {
	Listeners    Listeners             `json:"listeners"`
	Issuers      []Issuer              `json:"issuers"`
	Claims       Claims                `json:"claims"`
	ClaimHeaders map[string]ClaimNames `json:"claimHeaders"`
	// IssuerHeader carries the token's iss to the backend on every allow, like claimHeaders
	// (removed from the client's request first): with several issuers, the subject alone does
	// not say who the caller is. "" turns it off.
	IssuerHeader string     `json:"issuerHeader"`
	Revocation   Revocation `json:"revocation"`
	RateLimit    RateLimit  `json:"rateLimit"`
	Authz        Authz      `json:"authz"`
	Validation   Validation `json:"validation"`
	Backends     Backends   `json:"backends"`
	// SharedPrefixes are basePaths that other services may serve under (/shop holding
	// /shop/orders and /shop/cart). Any other basePath belongs to its service alone.
	SharedPrefixes []string `json:"sharedPrefixes"`
	// PathOverrides let a service's path take requests that another service's template
	// serves (/orders/special of promotions beside /orders/{id} of orders): refused otherwise.
	PathOverrides []PathOverride `json:"pathOverrides"`
	// BackendTLS are the TLS profiles that specs name for their https backends
	// (x-specgate backendTLS.profile): a CA and a client certificate, as files Envoy reads and
	// watches (mounted Secrets), so that specs never name a file of the gateway's pods.
	BackendTLS map[string]BackendTLSProfile `json:"backendTLS,omitempty"`
	// XFFTrustedHops is how many X-Forwarded-For hops in front of Envoy are trusted (a cloud
	// load balancer adds one); the ip rate-limit key and the client fallback use the result.
	XFFTrustedHops uint32    `json:"xffTrustedHops"`
	AccessLog      AccessLog `json:"accessLog"`
	Tracing        Tracing   `json:"tracing"`
	// APIDescription is the OpenAPI description each listener serves of its own operations.
	APIDescription APIDescription `json:"apiDescription"`
}

// APIDescription is where each listener serves the merged OpenAPI 3.1 description of the
// operations it serves, as it serves them (Envoy answers it itself). An empty path (the
// default) serves no such document: every Envoy holds the documents whole, and the
// control plane renders them on every push (docs/benchmarks.md).
type APIDescription struct {
	JSON  string `json:"json"`
	YAML  string `json:"yaml"`
	Title string `json:"title"` // info.title
}

// AccessLog is Envoy's access log: one JSON line per request on its stdout, in the shape
// Google Cloud Logging reads (docs/observability.md, Access logs).
type AccessLog struct {
	// Format is json, or "" for none (the default).
	Format string `json:"format"`
	// Sample is the share of requests logged, in (0, 1]; 0 means 1.
	Sample float64 `json:"sample"`
	// Subject is how the token's subject appears: plain (default), hash (SHA-256, hex, of
	// the token's subject) or omit.
	Subject string `json:"subject"`
	// Query keeps the query string in the logged URL (off by default: queries carry
	// personal data and secrets more often than paths).
	Query bool `json:"query"`
}

// Tracing is OpenTelemetry tracing across Envoy, authz and ratelimit (docs/observability.md).
type Tracing struct {
	// OTLP is the host:port of an OTLP/gRPC receiver (an OpenTelemetry Collector, or a
	// cloud's agent). "" (the default) turns tracing off.
	OTLP string `json:"otlp"`
	// Sampling is the share of requests that start a trace, in (0, 1] (default 0.01). A
	// request that carries a W3C traceparent keeps its caller's decision.
	Sampling float64 `json:"sampling"`
	// GCPProject, when set, adds Cloud Logging's logging.googleapis.com/trace field
	// ("projects/<project>/traces/<trace id>") to the access log, so that Cloud Logging links
	// each line to its trace in Cloud Trace.
	GCPProject string `json:"gcpProject"`
}

// SampleRate is Sampling with its default.
func (t Tracing) SampleRate() float64 {
	if t.Sampling == 0 {
		return 0.01
	}
	return t.Sampling
}

type Listeners struct {
	Public   uint32 `json:"public"`
	Internal uint32 `json:"internal"`
	// MaxRequestBodyBytes caps a request body: Envoy holds a body whole, up to this size,
	// before authz and the backend see the request, and answers 413 beyond it. Each request
	// in flight may hold this much memory in Envoy, tokenless ones included.
	MaxRequestBodyBytes uint32 `json:"maxRequestBodyBytes"`
	// AllowSemicolons lets a path hold ";" (or "%3B"). Off, such a request gets 400: Java
	// servers (Tomcat, Spring) cut a segment at ";" (matrix parameters), so /items/admin;x=1
	// would reach the backend's /items/admin through a route the gateway chose for another
	// path.
	AllowSemicolons bool `json:"allowSemicolons"`
	// TLS, when set, also serves the public listener's routes over HTTPS on its own port,
	// for clusters with no load balancer to terminate TLS.
	TLS *ListenerTLS `json:"tls,omitempty"`
}

// PathOverride allows one pair: Service's operations on Path are ordered before, and so take
// the requests of, the templates of service Over that also match Path.
type PathOverride struct {
	Path    string `json:"path"`
	Service string `json:"service"`
	Over    string `json:"over"`
}

// BackendTLSProfile is one backend TLS profile: the PEM files of the CA that signs the
// backends' certificates (empty: the system CAs) and of a client certificate chain and key
// for mutual TLS (both or neither). Envoy reloads them when their directory changes.
type BackendTLSProfile struct {
	CA          string `json:"ca,omitempty"`
	Certificate string `json:"certificate,omitempty"`
	Key         string `json:"key,omitempty"`
}

// ListenerTLS is the HTTPS listener: a port and the PEM files of its certificate chain and
// private key as Envoy sees them (a mounted Kubernetes Secret: tls.crt and tls.key). Envoy
// watches their directory and serves a new pair from the next handshake on.
type ListenerTLS struct {
	Port        uint32 `json:"port"`
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
}

// MaxRequestBodyLimit bounds Listeners.MaxRequestBodyBytes: bodies are held in Envoy's memory.
const MaxRequestBodyLimit = 64 << 20

type Issuer struct {
	Issuer     string   `json:"issuer"`
	JWKSURI    string   `json:"jwksUri"` // empty: OIDC discovery from Issuer
	Audiences  []string `json:"audiences"`
	Algorithms []string `json:"algorithms"`
	// RequireType, when set, is the JWT header typ every token of this issuer must carry:
	// at+jwt (RFC 9068) tells an access token from an ID token of the same issuer and
	// audience (RFC 8725 §3.11). "application/" in front is accepted.
	RequireType string `json:"requireType"`
}

// Claims name the claims that say who the user is, which OAuth client asked and which
// scopes were granted; each is an ordered list, the first claim a token carries wins.
type Claims struct {
	Subject ClaimNames `json:"subject"`
	Client  ClaimNames `json:"client"`
	Scope   ClaimNames `json:"scope"`
	// Plan is the claim naming the token's quota plan (rate limits with plans); none by
	// default: tokens count against a limit's default, API keys carry their own plan.
	Plan ClaimNames `json:"plan"`
}

// ClaimNames is an ordered list of claim names: the first one a token carries (non-empty)
// is used. In gateway.yaml one name or a list; "" or [] is none (only claims.client may be
// none: then no token is keyed by client id); null keeps the default.
type ClaimNames []string

func (c *ClaimNames) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var one string
	if json.Unmarshal(b, &one) == nil {
		*c = ClaimNames{}
		if one != "" {
			*c = ClaimNames{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a claim name or a list of claim names, got %s", b)
	}
	*c = many
	return nil
}

func (c ClaimNames) String() string { return strings.Join(c, ", ") }

type Revocation struct {
	// Store is a Redis URL (internal/redisurl: one server, a cluster or Sentinel), or
	// file:///path for one replica without Redis; authz
	// refuses to start without one ("memory", for tests, loses revocations on restart).
	Store             string   `json:"store"`
	ExpectedEntries   uint     `json:"expectedEntries"`
	FalsePositiveRate float64  `json:"falsePositiveRate"`
	MaxTokenLifetime  Duration `json:"maxTokenLifetime"`
}

type RateLimit struct {
	Store    string `json:"store"` // "memory" or a Redis URL (internal/redisurl)
	FailOpen *bool  `json:"failOpen"`
	// MaxHeaderValues bounds the values a header key counts apart, per rule, window and
	// replica: the values are the clients' to choose, and each would be a counter in the
	// store until its window ends. Values past the bound share one overflow bucket (per
	// client for header+client keys).
	MaxHeaderValues int `json:"maxHeaderValues"`
	// IPv6Prefix is the prefix length an IPv6 client address is counted by (the ip key and
	// the ip:<address> client of anonymous requests): one host holds a whole /64.
	IPv6Prefix int `json:"ipv6Prefix"`
}

// FailsOpen reports the effective failOpen setting (default true).
func (r RateLimit) FailsOpen() bool { return r.FailOpen == nil || *r.FailOpen }

type Authz struct {
	FailOpen bool     `json:"failOpen"`
	Timeout  Duration `json:"timeout"`
	// DecisionCacheTTL > 0 lets each Envoy worker reuse an authz allow for the same token on
	// the same route (and policy) for this long, without asking authz: revocations and a
	// stopped authz then take effect within this time. 0 (default) asks authz every time.
	DecisionCacheTTL Duration `json:"decisionCacheTTL"`
	// MaxTokenBytes caps a bearer token (default 16 KiB: an IdP that puts a hundred roles in
	// a token reaches 8 KiB); a larger one is refused with a message that says so. At most
	// MaxTokenLimit, within Envoy's 60 KiB of request headers.
	MaxTokenBytes int `json:"maxTokenBytes"`
	// DecisionLog samples authz's decisions into its log (docs/observability.md).
	DecisionLog DecisionLog `json:"decisionLog"`
	// CheckTokenless sends requests without an Authorization header on anonymous operations
	// to authz too. By default (false) Envoy serves them alone, doing in the route what authz
	// would (identity headers removed, the header allow-list, the ip: rate-limit client), so
	// that anonymous traffic neither waits for authz nor fails when it is down.
	CheckTokenless bool `json:"checkTokenless"`
	// Plugin decides token requests inside Envoy (docs/architecture.md): off unless Module is set.
	Plugin AuthzPlugin `json:"plugin"`
}

// AuthzPlugin is specgate authz run inside Envoy as a Wasm plugin (make build writes bin/authz-plugin.wasm): it
// allows what it can decide from keys and revocations authz feeds it, and leaves every other
// request to authz. It replaces the decision cache (decisionCacheTTL).
type AuthzPlugin struct {
	// Module is the plugin's .wasm file as Envoy's process reads it ("" turns the plugin off).
	Module string `json:"module"`
	// FeedAddress is authz's HTTP host:port (host:port,host:port for replicas).
	FeedAddress string `json:"feedAddress"`
	// Interval is how often each Envoy worker asks for the feed (default 250ms).
	Interval Duration `json:"interval"`
	// StaleAfter: with no feed answer for this long, the plugin decides nothing (default 2s): a
	// revocation takes effect in the plugin within Interval, never later than StaleAfter.
	StaleAfter Duration `json:"staleAfter"`
	// Credential reads the feed (feed.Credential of the admin token): the control plane sets
	// it, never gateway.yaml.
	Credential string `json:"-"`
}

// MaxPluginStaleAfter bounds how late a revocation may take effect in the plugin.
const MaxPluginStaleAfter = 10 * time.Second

// Validation is Envoy's side of request validation (x-specgate validate: request): how long
// it waits for specgate validate, and whether a request passes when it cannot be checked.
type Validation struct {
	// Address is specgate validate's gRPC host:port (host:port,host:port for replicas): the
	// control plane gives Envoy the cluster when an operation validates requests.
	Address  string   `json:"address"`
	Timeout  Duration `json:"timeout"`
	FailOpen bool     `json:"failOpen"`
}

// DecisionLog is authz's sampled log of decisions: one JSON line per sampled Check with the
// route, the decision and its reason, the token's issuer, kid and subject, and the latency.
type DecisionLog struct {
	// Sample is the share of Checks logged, in [0, 1]; 0 (the default) logs none.
	Sample float64 `json:"sample"`
	// Subject is plain (default), hash (SHA-256, hex) or omit, as for accessLog.subject.
	Subject string `json:"subject"`
}

// IdentityHeaders are the headers authz sets from a token (claimHeaders and issuerHeader),
// lower case and sorted: a client's own are always removed.
func (g Gateway) IdentityHeaders() []string {
	var hs []string
	for h := range g.ClaimHeaders {
		hs = append(hs, strings.ToLower(h))
	}
	if g.IssuerHeader != "" {
		hs = append(hs, strings.ToLower(g.IssuerHeader))
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// MaxTokenLimit bounds Authz.MaxTokenBytes.
const MaxTokenLimit = 48 << 10

// MaxDecisionCacheTTL bounds how late a revocation may take effect at the edge.
const MaxDecisionCacheTTL = 10 * time.Second

// Duration is a time.Duration written as "200ms", "24h".
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`duration must be a string like "200ms"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Default is the configuration used when no gateway.yaml is given.
func Default() Gateway {
	return Gateway{
		Listeners: Listeners{Public: 8080, Internal: 8081, MaxRequestBodyBytes: 1 << 20},
		// azp: the client of a user token where client_id is absent (Keycloak, Auth0, Entra
		// ID v2); scp: Entra ID's and Okta's scopes.
		Claims:       Claims{Subject: ClaimNames{"sub"}, Client: ClaimNames{"client_id", "azp"}, Scope: ClaimNames{"scope", "scp"}},
		ClaimHeaders: map[string]ClaimNames{"X-User-Id": {"sub"}, "X-Client-Id": {"client_id", "azp"}},
		IssuerHeader: "X-Token-Issuer",
		Revocation: Revocation{
			ExpectedEntries:   10_000_000,
			FalsePositiveRate: 1e-7,
			MaxTokenLifetime:  Duration{24 * time.Hour},
		},
		RateLimit: RateLimit{Store: "memory", MaxHeaderValues: 10_000, IPv6Prefix: 64},
		Authz: Authz{Timeout: Duration{200 * time.Millisecond}, MaxTokenBytes: 16 << 10,
			Plugin: AuthzPlugin{Interval: Duration{250 * time.Millisecond}, StaleAfter: Duration{2 * time.Second}}},
		Validation:     Validation{Address: "127.0.0.1:9005", Timeout: Duration{200 * time.Millisecond}},
		APIDescription: APIDescription{Title: "API"},
		Backends:       Backends{Deny: []string{"*.specgate.svc.cluster.local"}},
	}
}

// Load reads path over the defaults; unknown keys are errors.
func Load(path string) (Gateway, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Gateway{}, fmt.Errorf("%s: read gateway config: %w", path, err)
	}
	g, err := Parse(b)
	if err != nil {
		return Gateway{}, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Parse decodes a gateway.yaml document over the defaults and validates it.
func Parse(b []byte) (Gateway, error) {
	g := Default()
	// A map decodes by merging into the default one; claimHeaders given replace the default.
	g.ClaimHeaders = nil
	if err := decode(b, &g); err != nil {
		return Gateway{}, err
	}
	if g.ClaimHeaders == nil {
		g.ClaimHeaders = Default().ClaimHeaders
	}
	if err := g.Validate(); err != nil {
		return Gateway{}, err
	}
	return g, nil
}

// Validate joins every problem of g.
func (g Gateway) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if g.Listeners.Public == 0 || g.Listeners.Internal == 0 || g.Listeners.Public == g.Listeners.Internal {
		add("listeners: public and internal ports must be set and differ")
	}
	errs = append(errs, g.Backends.validate()...)
	if n := g.Authz.MaxTokenBytes; n < 1<<10 || n > MaxTokenLimit {
		add("authz: maxTokenBytes %d is outside 1024..%d", n, MaxTokenLimit)
	}
	for i, p := range g.SharedPrefixes {
		if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "{}") {
			add("sharedPrefixes[%d]: %q must be a literal path starting, and not ending, with /", i, p)
		}
	}
	for i, o := range g.PathOverrides {
		if !strings.HasPrefix(o.Path, "/") || o.Service == "" || o.Over == "" || o.Service == o.Over {
			add("pathOverrides[%d]: want a path starting with /, and two different services (service takes requests over's templates serve)", i)
		}
	}
	if n := g.Listeners.MaxRequestBodyBytes; n == 0 || n > MaxRequestBodyLimit {
		add("listeners: maxRequestBodyBytes %d is outside 1..%d (64 MiB)", n, MaxRequestBodyLimit)
	}
	if n := g.RateLimit.MaxHeaderValues; n < 1 {
		add("rateLimit: maxHeaderValues %d must be at least 1", n)
	}
	if n := g.RateLimit.IPv6Prefix; n < 1 || n > 128 {
		add("rateLimit: ipv6Prefix %d is outside 1..128", n)
	}
	if t := g.Listeners.TLS; t != nil {
		if t.Port == 0 || t.Port == g.Listeners.Public || t.Port == g.Listeners.Internal {
			add("listeners.tls: port %d must be set and differ from the public and internal ports", t.Port)
		}
		if !path.IsAbs(t.Certificate) || !path.IsAbs(t.Key) || path.Dir(t.Certificate) != path.Dir(t.Key) || t.Certificate == t.Key {
			add("listeners.tls: certificate %q and key %q must be two absolute paths in one directory (Envoy watches it for a new pair)", t.Certificate, t.Key)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(g.BackendTLS)) {
		p := g.BackendTLS[name]
		if !validProfileName(name) {
			add("backendTLS: profile name %q must be 1-63 of [a-z0-9-]", name)
		}
		if p.CA == "" && p.Certificate == "" {
			add("backendTLS.%s: set ca, or certificate and key, or both", name)
		}
		if (p.Certificate == "") != (p.Key == "") || p.Certificate != "" && (path.Dir(p.Certificate) != path.Dir(p.Key) || p.Certificate == p.Key) {
			add("backendTLS.%s: certificate and key go together, two files in one directory (Envoy watches it for a new pair)", name)
		}
		for _, f := range []string{p.CA, p.Certificate, p.Key} {
			if f != "" && !path.IsAbs(f) {
				add("backendTLS.%s: %q must be an absolute path", name, f)
			}
		}
	}
	seen := map[string]bool{}
	for i, is := range g.Issuers {
		if is.Issuer == "" {
			add("issuers[%d]: issuer is required", i)
		}
		if seen[is.Issuer] {
			add("issuers[%d]: duplicate issuer %q", i, is.Issuer)
		}
		seen[is.Issuer] = true
		if is.JWKSURI != "" {
			if u, err := url.Parse(is.JWKSURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				add("issuers[%d]: jwksUri %q is not an http(s) URL", i, is.JWKSURI)
			}
		}
		if len(is.Audiences) == 0 {
			// Without an audience any token of the issuer, minted for any other API, passes.
			add("issuers[%d]: audiences must list the audiences this gateway accepts", i)
		}
		for _, a := range is.Algorithms {
			if a == "none" || strings.HasPrefix(a, "HS") {
				add("issuers[%d]: algorithm %s is never allowed with a JWKS", i, a)
			}
		}
	}
	if len(g.Claims.Subject) == 0 || len(g.Claims.Scope) == 0 {
		add("claims: subject and scope must be set")
	}
	for name, list := range map[string]ClaimNames{"subject": g.Claims.Subject, "client": g.Claims.Client, "scope": g.Claims.Scope, "plan": g.Claims.Plan} {
		if slices.Contains(list, "") {
			add("claims.%s: an empty claim name", name)
		}
	}
	for h, c := range g.ClaimHeaders {
		if h == "" || len(c) == 0 || slices.Contains(c, "") || strings.ContainsAny(h, " :\t") {
			add("claimHeaders: invalid entry %q: %q", h, c.String())
		}
		if g.IssuerHeader != "" && strings.EqualFold(h, g.IssuerHeader) {
			add("claimHeaders: %q is issuerHeader already", h)
		}
	}
	r := g.Revocation
	if r.ExpectedEntries == 0 || r.FalsePositiveRate <= 0 || r.FalsePositiveRate >= 1 || r.MaxTokenLifetime.Duration <= 0 {
		add("revocation: expectedEntries, falsePositiveRate (0..1) and maxTokenLifetime must be positive")
	}
	switch s := r.Store; {
	case redisurl.IsRedis(s):
		if err := redisurl.Check(s); err != nil {
			add("revocation: %v", err)
		}
	case s != "" && s != "memory" && !strings.HasPrefix(s, "file://"):
		add("revocation: store must be a Redis URL (redis://, rediss://, redis+cluster://, redis+sentinel://), file:// or memory")
	}
	switch s := g.RateLimit.Store; {
	case redisurl.IsRedis(s):
		if err := redisurl.Check(s); err != nil {
			add("rateLimit: %v", err)
		}
	case s != "memory":
		add("rateLimit: store must be memory or a Redis URL (redis://, rediss://, redis+cluster://, redis+sentinel://)")
	}
	switch a := g.AccessLog; {
	case a.Format == "" && (a.Sample != 0 || a.Subject != "" || a.Query):
		add("accessLog: sample, subject and query need format: json")
	case a.Format != "" && a.Format != "json":
		add("accessLog.format %q: json, or empty for no access log", a.Format)
	case a.Sample < 0 || a.Sample > 1:
		add("accessLog.sample %g: a share of requests in (0, 1]", a.Sample)
	case !validSubject(a.Subject):
		add("accessLog.subject %q: plain, hash or omit", a.Subject)
	}
	switch t := g.Tracing; {
	case t.OTLP == "" && (t.Sampling != 0 || t.GCPProject != ""):
		add("tracing: sampling and gcpProject need otlp")
	case t.OTLP != "":
		if _, _, err := net.SplitHostPort(t.OTLP); err != nil {
			add("tracing.otlp %q: host:port of an OTLP/gRPC receiver", t.OTLP)
		}
		if t.Sampling < 0 || t.Sampling > 1 {
			add("tracing.sampling %g: a share of requests in (0, 1]", t.Sampling)
		}
	}
	if d := g.Authz.DecisionLog; d.Sample < 0 || d.Sample > 1 || !validSubject(d.Subject) {
		add("authz.decisionLog: sample %g must be in [0, 1], subject %q plain, hash or omit", d.Sample, d.Subject)
	}
	if g.Authz.FailOpen && (len(g.ClaimHeaders) > 0 || g.IssuerHeader != "") {
		// When authz cannot be asked, Envoy lets the request through untouched: client-sent
		// copies of the identity headers would reach the backends as if the gateway set them.
		names := slices.Sorted(maps.Keys(g.ClaimHeaders))
		if g.IssuerHeader != "" {
			names = append(names, g.IssuerHeader)
		}
		add("authz: failOpen would let forged %s headers through when authz is down; set claimHeaders: {} and issuerHeader: \"\" to use it", strings.Join(names, ", "))
	}
	if g.Authz.Timeout.Duration <= 0 {
		add("authz: timeout must be positive")
	}
	if g.Validation.Timeout.Duration <= 0 {
		add("validation: timeout must be positive")
	}
	for _, a := range strings.Split(g.Validation.Address, ",") {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil || port == "" {
			add("validation.address %q: want host:port, or host:port,host:port for replicas", g.Validation.Address)
			break
		}
	}
	for key, p := range map[string]string{"json": g.APIDescription.JSON, "yaml": g.APIDescription.YAML} {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "{}?#*") || strings.Contains(p, "//")) {
			add("apiDescription.%s %q: must be a literal path such as /openapi.%s, or \"\" for none", key, p, key)
		}
	}
	if d := g.APIDescription; d.JSON != "" && d.JSON == d.YAML {
		add("apiDescription: json and yaml are both %s", d.JSON)
	}
	if p := g.Authz.Plugin; p.Module != "" {
		switch {
		case p.FeedAddress == "":
			add("authz.plugin: feedAddress (authz's HTTP host:port) is required with a module")
		case g.Authz.DecisionCacheTTL.Duration > 0:
			add("authz.plugin: the plugin replaces the decision cache: set decisionCacheTTL to 0")
		case p.Interval.Duration < 10*time.Millisecond || p.StaleAfter.Duration <= p.Interval.Duration || p.StaleAfter.Duration > MaxPluginStaleAfter:
			add("authz.plugin: interval %s and staleAfter %s must satisfy 10ms <= interval < staleAfter <= %s",
				p.Interval.Duration, p.StaleAfter.Duration, MaxPluginStaleAfter)
		}
	}
	if d := g.Authz.DecisionCacheTTL.Duration; d != 0 && (d < time.Millisecond || d > MaxDecisionCacheTTL) {
		add("authz: decisionCacheTTL %s is outside 1ms..%s, or 0 for off (a revocation takes effect at the edge only after it)", d, MaxDecisionCacheTTL)
	}
	return errors.Join(errs...)
}

// validSubject is a setting of how a log shows subjects.
func validSubject(s string) bool { return s == "" || s == "plain" || s == "hash" || s == "omit" }

// validProfileName: a backend TLS profile's name is part of Envoy secret names.
func validProfileName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
