// Package ir is the gateway model between OpenAPI and Envoy: plain structs that import
// neither kin-openapi nor Envoy's types. compiler.Build fills it; package translate turns it
// into Envoy resources. Every level has Validate, which joins all problems it finds.
package ir

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/specgate/specgate/policy"
)

// Gateway is the merged model of every service, and, once planned (Plan), the listeners'
// route tables and the gateway-wide settings: everything translation needs.
type Gateway struct {
	Services  []Service  `json:"services"` // sorted by Name
	Listeners []Listener `json:"listeners,omitempty"`
	Settings  Settings   `json:"settings"`
}

// Service is one OpenAPI file.
type Service struct {
	Name          string  `json:"name"`
	File          string  `json:"file"`
	Backend       Backend `json:"backend"`
	BasePath      string  `json:"basePath,omitempty"`
	StripBasePath bool    `json:"stripBasePath,omitempty"`
	CORS          *CORS   `json:"cors,omitempty"`
	// CircuitBreaker and OutlierDetection protect the backend (nil: Envoy's defaults, no
	// ejection).
	CircuitBreaker   *CircuitBreaker   `json:"circuitBreaker,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	Operations       []Operation       `json:"operations"` // sorted by Path, then Method
	// Schema is the service's description for specgate validate, when an operation
	// validates its requests.
	Schema *Schema `json:"schema,omitempty"`
}

// Schema is a service's OpenAPI description as specgate validate reads it: JSON, every $ref
// inside it. Hash (hex SHA-256 of Doc, 16 bytes) names it: the routes of its operations carry
// the hash, so a route is always checked against the description it was compiled from.
type Schema struct {
	Hash string          `json:"hash"`
	Doc  json.RawMessage `json:"doc"`
}

// CircuitBreaker bounds what one Envoy sends a backend at once; beyond, requests fail at once
// (503 backend_unavailable) instead of queueing behind a backend that cannot keep up. Zero
// fields keep Envoy's defaults (1024 each). RetryBudgetPercent bounds retries in flight as a
// share of the requests in flight (default 20 %, whenever an operation retries).
type CircuitBreaker struct {
	MaxConnections     uint32  `json:"maxConnections,omitempty"`
	MaxPendingRequests uint32  `json:"maxPendingRequests,omitempty"`
	MaxRequests        uint32  `json:"maxRequests,omitempty"`
	RetryBudgetPercent float64 `json:"retryBudgetPercent,omitempty"`
}

// OutlierDetection ejects a backend host after Consecutive5xx failures in a row, for
// BaseEjectionTime (longer each time), never more than MaxEjectionPercent of the hosts; it
// matters for a backend of several hosts (a headless Service).
type OutlierDetection struct {
	Consecutive5xx     uint32        `json:"consecutive5xx"`
	Interval           time.Duration `json:"interval"`
	BaseEjectionTime   time.Duration `json:"baseEjectionTime"`
	MaxEjectionPercent uint32        `json:"maxEjectionPercent"`
}

func (c *CircuitBreaker) String() string {
	n := func(v uint32) string {
		if v == 0 {
			return "default"
		}
		return fmt.Sprint(v)
	}
	budget := "default"
	if c.RetryBudgetPercent > 0 {
		budget = fmt.Sprintf("%g%%", c.RetryBudgetPercent)
	}
	return fmt.Sprintf("connections %s, pending %s, requests %s, retry budget %s", n(c.MaxConnections), n(c.MaxPendingRequests), n(c.MaxRequests), budget)
}

func (o *OutlierDetection) String() string {
	return fmt.Sprintf("eject after %d 5xx in a row (checked every %s) for %s, at most %d%% of hosts", o.Consecutive5xx, o.Interval, o.BaseEjectionTime, o.MaxEjectionPercent)
}

// DefaultRetryBudgetPercent is CircuitBreaker.RetryBudgetPercent when unset.
const DefaultRetryBudgetPercent = 20

// Backend is where a service's requests go.
type Backend struct {
	TLS  bool   `json:"tls,omitempty"`
	Host string `json:"host"`
	Port uint32 `json:"port"`
	// PathPrefix is put in front of every forwarded path (http://svc:8080/api → /api).
	PathPrefix string `json:"pathPrefix,omitempty"`
	// TLSProfile names gateway.yaml's backendTLS profile (its CA, its client certificate);
	// empty: the system CAs, no client certificate. SAN is the name the backend's
	// certificate must carry (default: Host).
	TLSProfile string `json:"tlsProfile,omitempty"`
	SAN        string `json:"san,omitempty"`
	// Line is where the spec file sets it, for diagnostics of gateway.yaml's backend policy.
	Line int `json:"-"`
}

// Exposure says on which listeners an operation is served.
type Exposure string

const (
	Public   Exposure = "public"   // both listeners
	Internal Exposure = "internal" // the internal listener only
)

// Operation is one method on one path, as the gateway serves it.
type Operation struct {
	// ID is the route id, <service>.<operationId>: it names the Envoy route, its stats, its
	// rate-limit descriptor and its metrics label.
	ID     string `json:"id"`
	Method string `json:"method"`
	// Path is the gateway path template (basePath included), e.g. /orders/{id}.
	Path           string        `json:"path"`
	Exposure       Exposure      `json:"exposure"`
	Timeout        time.Duration `json:"timeout,omitempty"`
	AllowedHeaders []string      `json:"allowedHeaders,omitempty"` // lower case, sorted
	RateLimits     []RateLimit   `json:"rateLimits,omitempty"`
	// MaxRequestBodyBytes replaces gateway.yaml's listeners.maxRequestBodyBytes for this
	// operation (an upload); 0 keeps it.
	MaxRequestBodyBytes uint32 `json:"maxRequestBodyBytes,omitempty"`
	// IPAllow, when set, admits only clients whose address (the trusted one, after
	// xffTrustedHops) is in one of these canonical prefixes; the others get 403.
	IPAllow []string `json:"ipAllow,omitempty"`
	// WebSocket, when set, lets a request upgrade to a WebSocket once it passed authz and the
	// rate limits.
	WebSocket *WebSocket `json:"websocket,omitempty"`
	// Validation, when set, has specgate validate check each request against the
	// operation's description (x-specgate validate: request) before the backend sees it.
	Validation *Validation `json:"validation,omitempty"`
	// Retries, when set, retries a failed request on the service's backend.
	Retries  *Retries `json:"retries,omitempty"`
	Security Security `json:"security"`
	// QueryToken: the operation declares an access_token query parameter. Any other refuses
	// a request that carries one (RFC 6750 §2.3): its backend might act on a token the
	// gateway never checked.
	QueryToken bool `json:"queryToken,omitempty"`
	// Line is where the spec file declares the operation, for the plan's diagnostics.
	Line int `json:"-"`
}

// Validation finds an operation in its service's Schema.
type Validation struct {
	Schema string `json:"schema"` // Schema.Hash
	Path   string `json:"path"`   // the operation's key in the description's paths
}

// WebSocket bounds an operation's upgraded connections: closed after IdleTimeout without a
// frame either way, and after MaxDuration in any case (an open connection is not checked
// again, so this is how long it can outlive its token).
type WebSocket struct {
	IdleTimeout time.Duration `json:"idleTimeout"`
	MaxDuration time.Duration `json:"maxDuration"`
}

// The WebSocket bounds of `websocket: true`.
const (
	DefaultWebSocketIdle = 5 * time.Minute
	DefaultWebSocketMax  = time.Hour
)

// Retries retry a failed request up to Attempts more times, on the conditions On (Envoy's
// retry_on names), each try within PerTryTimeout when set. An operation whose method is not
// idempotent retries only where the request never reached a backend, unless NonIdempotent.
type Retries struct {
	Attempts      uint32        `json:"attempts"`
	On            []string      `json:"on"`
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	NonIdempotent bool          `json:"nonIdempotent,omitempty"`
}

func (r *Retries) String() string {
	s := fmt.Sprintf("%d on %s", r.Attempts, strings.Join(r.On, ","))
	if r.PerTryTimeout > 0 {
		s += fmt.Sprintf(", %s per try", r.PerTryTimeout)
	}
	if r.NonIdempotent {
		s += ", non-idempotent methods too"
	}
	return s
}

// For is the retry_on conditions for a request of method: all of On when the method is
// idempotent or NonIdempotent is set, else only those where no backend saw the request
// (reset becomes reset-before-request); RetrySafe always, as on every route.
func (r *Retries) For(method string) []string {
	on := slices.Clone(RetrySafe)
	for _, c := range r.On {
		if !Idempotent(method) && !r.NonIdempotent {
			if c == "reset" {
				c = "reset-before-request"
			}
			if !slices.Contains(RetrySafe, c) {
				continue
			}
		}
		if !slices.Contains(on, c) {
			on = append(on, c)
		}
	}
	slices.Sort(on)
	return on
}

// MaxRetries bounds Retries.Attempts: each retry is another request to a backend that is
// failing.
const MaxRetries = 5

// RetryConditions are the retry_on conditions a spec may name; DefaultRetryOn those of
// retries without on. RetrySafe are those where no backend saw the request, which every
// method may retry: every route retries them TransportRetries times, retries declared or not,
// so that a pod going away or a connection refused during a network change fails no request.
var (
	RetryConditions = []string{"5xx", "connect-failure", "gateway-error", "refused-stream", "reset", "reset-before-request", "retriable-4xx"}
	DefaultRetryOn  = []string{"connect-failure", "gateway-error", "refused-stream", "reset"}
	RetrySafe       = []string{"connect-failure", "refused-stream", "reset-before-request"}
)

// TransportRetries is how many times every route retries on RetrySafe conditions.
const TransportRetries = 1

// Idempotent reports whether a method may be sent twice with the effect of once (RFC 9110
// §9.2.2; QUERY is safe).
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "QUERY":
		return true
	}
	return false
}

// Security is OpenAPI's requirement list for one operation.
type Security struct {
	Anonymous bool          `json:"anonymous,omitempty"`
	AnyOf     []Requirement `json:"anyOf,omitempty"`
}

// Requirement is one requirement object: every scope (AND), from one of Issuers (any when empty).
type Requirement struct {
	Scopes  []string `json:"scopes,omitempty"`
	Issuers []string `json:"issuers,omitempty"`
	// APIKey, when set, is met by an API key (OpenAPI apiKey scheme) whose grant holds Scopes.
	APIKey *policy.APIKey `json:"apiKey,omitempty"`
}

// Unit is the window of a rate limit.
type Unit string

const (
	Second Unit = "second"
	Minute Unit = "minute"
	Hour   Unit = "hour"
	Day    Unit = "day"
)

// KeyKind is what a rate limit counts by.
type KeyKind string

const (
	KeyRoute  KeyKind = "route"
	KeyClient KeyKind = "client"
	KeyIP     KeyKind = "ip"
	KeyHeader KeyKind = "header"
	// KeyHeaderClient counts by a header's value and the client together: a tenant header
	// the client chooses cannot buy it a fresh bucket.
	KeyHeaderClient KeyKind = "header+client"
)

// RateLimit is one quota; all of an operation's quotas apply.
type RateLimit struct {
	Requests uint32  `json:"requests"`
	Per      Unit    `json:"per"`
	Key      KeyKind `json:"key"`
	Header   string  `json:"header,omitempty"` // for KeyHeader and KeyHeaderClient
	// Plans, instead of Requests, gives each quota plan its own count: the plan of the
	// request's API key or token (gateway.yaml claims.plan), Default for any other plan and
	// for requests without one.
	Plans *Plans `json:"plans,omitempty"`
}

// Plans are a rate limit's requests per quota plan.
type Plans struct {
	Limits  map[string]uint32 `json:"limits"`
	Default uint32            `json:"default"`
}

// NoPlan is the plan descriptor value of a request without a plan: not a plan name
// ([a-z0-9-]), so that it always counts against Default.
const NoPlan = "*"

// CORS is a service's cross-origin policy.
type CORS struct {
	AllowOrigins     []string      `json:"allowOrigins"`
	AllowHeaders     []string      `json:"allowHeaders,omitempty"`
	ExposeHeaders    []string      `json:"exposeHeaders,omitempty"`
	AllowCredentials bool          `json:"allowCredentials,omitempty"`
	MaxAge           time.Duration `json:"maxAge,omitempty"`
}

var (
	serviceName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	headerName  = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
	// methods are those Envoy's HTTP/1 parser accepts (http-parser's list, and QUERY),
	// without CONNECT, which Envoy serves as a tunnel, never through routes like these.
	// OpenAPI 3.2 names any other in additionalOperations; Envoy would answer it 400.
	methods = strings.Fields(`ACL BIND CHECKOUT COPY DELETE GET HEAD LINK LOCK MERGE MKACTIVITY
		MKCALENDAR MKCOL MOVE MSEARCH NOTIFY OPTIONS PATCH POST PROPFIND PROPPATCH PURGE PUT QUERY
		REBIND REPORT SEARCH SOURCE SUBSCRIBE TRACE UNBIND UNLINK UNLOCK UNSUBSCRIBE`)
)

// Validate joins every problem of the model.
func (g Gateway) Validate() error {
	var errs []error
	names := map[string]bool{}
	ids := map[string]bool{}
	for _, s := range g.Services {
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("service %s: duplicate name", s.Name))
		}
		names[s.Name] = true
		for _, op := range s.Operations {
			if ids[op.ID] {
				errs = append(errs, fmt.Errorf("route %s: duplicate id", op.ID))
			}
			ids[op.ID] = true
		}
		errs = append(errs, s.Validate())
	}
	if !slices.IsSortedFunc(g.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) }) {
		errs = append(errs, errors.New("services are not sorted by name"))
	}
	errs = append(errs, g.validateListeners())
	return errors.Join(errs...)
}

// Validate joins every problem of the service.
func (s Service) Validate() error {
	var errs []error
	if !serviceName.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("service %q: name must match %s", s.Name, serviceName))
	}
	if s.Backend.Host == "" || s.Backend.Port == 0 {
		errs = append(errs, fmt.Errorf("service %s: backend needs a host and a port", s.Name))
	}
	if s.BasePath != "" && (!strings.HasPrefix(s.BasePath, "/") || strings.HasSuffix(s.BasePath, "/")) {
		errs = append(errs, fmt.Errorf("service %s: basePath %q must start and not end with /", s.Name, s.BasePath))
	}
	if s.CORS != nil {
		errs = append(errs, s.CORS.Validate())
	}
	for _, op := range s.Operations {
		if err := op.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Validate joins every problem of the operation.
func (o Operation) Validate() error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s %s: "+format, append([]any{o.Method, o.Path}, a...)...))
	}
	if o.ID == "" {
		add("empty route id")
	}
	if !ValidMethod(o.Method) {
		add("unsupported method")
	}
	// Translation matches on the parsed template: a path it cannot parse would match nothing.
	if _, err := ParseTemplate(o.Path); err != nil {
		add("%v", err)
	}
	if o.Exposure != Public && o.Exposure != Internal {
		add("exposure %q must be public or internal", o.Exposure)
	}
	if o.Timeout < 0 {
		add("negative timeout")
	}
	for _, h := range o.AllowedHeaders {
		if !headerName.MatchString(h) || h != strings.ToLower(h) {
			add("allowed header %q is not a lower-case header name", h)
		}
	}
	for _, rl := range o.RateLimits {
		if err := rl.Validate(); err != nil {
			add("%v", err)
		}
	}
	if !o.Security.Anonymous && len(o.Security.AnyOf) == 0 {
		add("security: no requirement and not anonymous")
	}
	for _, r := range o.Security.AnyOf {
		for _, sc := range r.Scopes {
			if !policy.ValidScope(sc) {
				add("scope %q must be a non-empty word", sc)
			}
		}
	}
	return errors.Join(errs...)
}

// Validate reports a quota Envoy and the rate-limit service cannot enforce.
func (r RateLimit) Validate() error {
	var errs []error
	switch p := r.Plans; {
	case p == nil && r.Requests == 0:
		errs = append(errs, errors.New("rate limit: requests must be > 0"))
	case p != nil && r.Requests != 0:
		errs = append(errs, errors.New("rate limit: requests or plans, not both"))
	case p != nil:
		if p.Default == 0 || len(p.Limits) == 0 {
			errs = append(errs, errors.New("rate limit: plans need limits and a default > 0"))
		}
		var bad []string
		for _, name := range slices.Sorted(maps.Keys(p.Limits)) {
			if !planName.MatchString(name) || p.Limits[name] == 0 {
				bad = append(bad, strconv.Quote(name))
			}
		}
		if len(bad) > 0 {
			errs = append(errs, fmt.Errorf("rate limit: plans %s: each needs a name of [a-z0-9-] and requests > 0", strings.Join(bad, ", ")))
		}
	}
	switch r.Per {
	case Second, Minute, Hour, Day:
	default:
		errs = append(errs, fmt.Errorf("rate limit: unknown unit %q", r.Per))
	}
	switch r.Key {
	case KeyRoute, KeyClient, KeyIP:
		if r.Header != "" {
			errs = append(errs, fmt.Errorf("rate limit: key %s takes no header", r.Key))
		}
	case KeyHeader, KeyHeaderClient:
		if !headerName.MatchString(r.Header) {
			errs = append(errs, fmt.Errorf("rate limit: invalid header name %q", r.Header))
		}
	default:
		errs = append(errs, fmt.Errorf("rate limit: unknown key kind %q", r.Key))
	}
	// One line: each is about the same rate limit.
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = strings.TrimPrefix(err.Error(), "rate limit: ")
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New("rate limit: " + strings.Join(msgs, "; "))
}

var planName = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Validate reports an unusable CORS policy.
func (c CORS) Validate() error {
	var errs []error
	if len(c.AllowOrigins) == 0 {
		errs = append(errs, errors.New("cors: allowOrigins is empty"))
	}
	for _, o := range c.AllowOrigins {
		if o != "*" && !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") {
			errs = append(errs, fmt.Errorf("cors: origin %q must be * or an http(s) origin", o))
		}
		if o == "*" && c.AllowCredentials {
			errs = append(errs, errors.New("cors: allowCredentials cannot be used with origin *"))
		}
	}
	for _, h := range append(slices.Clone(c.AllowHeaders), c.ExposeHeaders...) {
		if !headerName.MatchString(h) {
			errs = append(errs, fmt.Errorf("cors: invalid header name %q", h))
		}
	}
	if c.MaxAge < 0 {
		errs = append(errs, errors.New("cors: negative maxAge"))
	}
	return errors.Join(errs...)
}

// ValidServiceName reports whether s can name a service: [a-z0-9-]{1,63}, no leading or
// trailing dash (a DNS label, as it names clusters, files and metrics).
func ValidServiceName(s string) bool { return serviceName.MatchString(s) }

// ValidHeaderName reports whether s is an HTTP header field name (RFC 9110 token).
func ValidHeaderName(s string) bool { return headerName.MatchString(s) }

// StatName is the name of a route's Envoy stats (vhost.<vhost>.route.<name>.upstream_rq_*;
// envoy_route="<name>" in Prometheus). Envoy's route tag ends at the first dot, so every
// character outside [A-Za-z0-9_-] becomes _: orders.getOrder → orders_getOrder.
func StatName(routeID string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, routeID)
}

// ValidMethod reports whether the gateway can route method (case matters: get is not GET).
func ValidMethod(m string) bool { return slices.Contains(methods, m) }
