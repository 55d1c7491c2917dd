// Package policy holds the few names and encodings that the compiler writes into Envoy
// resources and that the authorization and rate-limit services read back. It is a leaf: it
// imports nothing of specgate, so neither service depends on the compiler or on each other.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Keys of ExtAuthzPerRoute.check_settings.context_extensions.
const (
	// ExtRoute holds the route id, <service>.<operationId>.
	ExtRoute = "route"
	// ExtPolicy holds the JSON encoding of Route.
	ExtPolicy = "policy"
)

// The gRPC metadata with which Envoy's ext_proc filter opens a stream to specgate validate
// (x-specgate validate: request): where the route's operation is in which description.
const (
	// ValidateSchema is the description's hash, the name of its resource over ADS.
	ValidateSchema = "x-specgate-schema"
	// ValidatePath is the operation's key in the description's paths (/items/{id}).
	ValidatePath = "x-specgate-path"
	// ValidateTemplate is the gateway path the route matches (/shop/items/{id}), from which
	// the processor takes the path parameters.
	ValidateTemplate = "x-specgate-template"
	// ValidateRoute is the route id, for metrics and logs.
	ValidateRoute = "x-specgate-route"
	// ValidateNamespace is the dynamic-metadata namespace of the processor's answer:
	// MetaResult is valid or invalid, for the access log and traces.
	ValidateNamespace = "specgate.validate"
	MetaResult        = "result"
)

// Rate-limit names shared by the compiled route actions, the RateLimitConfig and the
// rate-limit service. A descriptor is always route=<id>, limit=<index>[, <key kind>=<value>].
const (
	Domain     = "specgate"
	DescRoute  = "route"
	DescLimit  = "limit"
	DescClient = "client"
	// DescPlan is the quota plan of a rate limit with plans (MetaPlan, "*" without one).
	DescPlan = "plan"
	// DescIP is fixed by Envoy: its remote_address action always emits this key.
	DescIP     = "remote_address"
	DescHeader = "header"
)

// Dynamic metadata that the authorization service returns for the rate-limit descriptors.
// Envoy files it under MetadataNamespace whatever the filter is named.
const (
	MetadataNamespace = "envoy.filters.http.ext_authz"
	// MetaSubject is the token subject ("" for anonymous requests).
	MetaSubject = "subject"
	// MetaClient is the rate-limit client key: "sub:<subject>", "cid:<client id>" for a
	// client-credentials token, or "ip:<address>" for an anonymous request.
	MetaClient = "client"
	// For the access log (gateway.yaml accessLog), on allows and denials alike: MetaDecision
	// is allow or deny, MetaReason the reason (specgate_authz_checks_total's), and
	// MetaSubjectHash the hex SHA-256 of the subject (MetaSubject) when accessLog.subject is
	// hash.
	// MetaPlan is the quota plan of the request's API key ("" otherwise).
	MetaPlan        = "plan"
	MetaDecision    = "decision"
	MetaReason      = "reason"
	MetaSubjectHash = "subject_hash"
)

// The Envoy plugin (gateway.yaml authz.plugin) decides on routes whose metadata under
// PluginFilter holds PluginPolicy (the route's Route, as in ExtPolicy); when it allows, it sets
// the filter state PluginAllowState and Envoy skips ext_authz.
const (
	PluginFilter = "specgate.plugin"
	PluginPolicy = "policy"
	// PluginAllowState is the filter state key Envoy's Wasm filter gives the plugin's
	// property PluginAllowProperty.
	PluginAllowProperty = "specgate_plugin_allow"
	PluginAllowState    = "wasm." + PluginAllowProperty
)

// The edge decision cache (gateway.yaml authz.decisionCacheTTL): a Lua filter named
// CacheFilter, just before ext_authz, reuses an allow of authz for the same token on the same
// route. The compiler writes the filter and each protected route's CacheFilter metadata;
// authz says in MetaCache which allows may be reused and how.
const (
	CacheFilter = "specgate.authz_cache"
	// CacheRouteKey (route metadata) is the route id and a hash of its policy and of the
	// gateway-wide rules authz decides by, so that no allow made under other rules is reused.
	CacheRouteKey = "key"
	// CacheAllow (route metadata) lists the client headers the route forwards, lower case:
	// BaseHeaders and Route.Headers, as Route.Allowed decides.
	CacheAllow = "allow"
	// MetaCache (authz dynamic metadata) offers an allow for reuse:
	// {"ttl_ms": n, "set": {header: value}, "del": [header]}, the identity headers to set
	// and to remove. Absent: ask authz every time.
	MetaCache = "cache"
)

// MetaHeader is the dynamic-metadata key for a header:<Name> rate-limit key: the header's
// value, or "ip:<address>" when the request does not carry it.
func MetaHeader(name string) string { return "header:" + strings.ToLower(name) }

// BaseHeaders reach every backend whatever a route allows (lower case, sorted).
var BaseHeaders = []string{
	"accept", "accept-encoding", "accept-language", "content-length", "content-type", "host",
	"traceparent", "tracestate", "user-agent", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
}

// Route is the authorization policy of one route.
type Route struct {
	// ID is the route id; it labels metrics.
	ID string `json:"id"`
	// Anonymous routes pass without a token; a token that is present must still be valid.
	Anonymous bool `json:"anonymous,omitempty"`
	// AnyOf is OpenAPI's security list: a token passes if it meets one requirement.
	AnyOf []Requirement `json:"anyOf,omitempty"`
	// Headers are the client headers allowed beyond BaseHeaders (lower case, sorted).
	Headers []string `json:"headers,omitempty"`
	// RateLimitHeaders are the headers named by header:<Name> rate-limit keys (lower case).
	RateLimitHeaders []string `json:"rateLimitHeaders,omitempty"`
	// QueryToken routes accept an access_token query parameter (their operation declares
	// it); the others refuse a request that carries one.
	QueryToken bool `json:"queryToken,omitempty"`
	// WebSocket routes also forward WebSocketHeaders. (An authz older than this field refuses
	// such a route's policy: upgrade authz before using x-specgate websocket.)
	WebSocket bool `json:"webSocket,omitempty"`
}

// QueryTokenParam is RFC 6750's query parameter for a bearer token (§2.3).
const QueryTokenParam = "access_token"

// Requirement is one OpenAPI security requirement object: every scope is needed (AND), from a
// token of one of Issuers (any trusted issuer when empty).
type Requirement struct {
	Scopes  []string `json:"scopes,omitempty"`
	Issuers []string `json:"issuers,omitempty"`
	// APIKey, when set, is met by an API key instead of a token: one whose grant holds
	// Scopes. (An authz older than this field refuses such a route's policy.)
	APIKey *APIKey `json:"apiKey,omitempty"`
}

// APIKey says where a request carries its key: OpenAPI's apiKey scheme (its name, in
// header, query or cookie, under Name), after Prefix when set (Discord's "Bot ").
type APIKey struct {
	Scheme string `json:"scheme"`
	In     string `json:"in"`
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// Validate reports a policy the services cannot enforce; they refuse such a route.
func (r Route) Validate() error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("policy: empty route id"))
	}
	if !r.Anonymous && len(r.AnyOf) == 0 {
		errs = append(errs, fmt.Errorf("policy %s: neither anonymous nor any requirement", r.ID))
	}
	for _, req := range r.AnyOf {
		if k := req.APIKey; k != nil && (k.Name == "" || k.In != "header" && k.In != "query" && k.In != "cookie") {
			errs = append(errs, fmt.Errorf("policy %s: apiKey %s: in %q, name %q", r.ID, k.Scheme, k.In, k.Name))
		}
		for _, s := range req.Scopes {
			if !ValidScope(s) {
				errs = append(errs, fmt.Errorf("policy %s: invalid scope %q", r.ID, s))
			}
		}
	}
	return errors.Join(errs...)
}

// ValidScope reports whether s can be a scope: a non-empty word (scope claims are
// space-separated lists).
func ValidScope(s string) bool { return s != "" && !strings.ContainsAny(s, " \t\r\n") }

// Encode returns the context extensions carrying r.
func (r Route) Encode() (map[string]string, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return map[string]string{ExtRoute: r.ID, ExtPolicy: string(b)}, nil
}

// Decode reads the policy from its encoded form (the ExtPolicy value).
func Decode(s string) (Route, error) {
	var r Route
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Route{}, fmt.Errorf("policy: decode: %w", err)
	}
	return r, r.Validate()
}

// What reaches a backend of the clients' headers is one rule, written here: BaseHeaders and
// the route's allowed headers, but never an identity header, which only authz sets. The
// compiler's plan computes each route's list with Forwarded (Envoy's tokenless routes and the
// edge decision cache read that list); authz, which gets the route's own headers on every
// check, asks Allowed and removes the identity headers it does not set.

// Forwarded is the sorted list of client headers that reach the backend of a route that
// allows the headers allowed (lower case, sorted), and the WebSocket handshake's when
// webSocket, identity being the identity headers (lower case, sorted).
func Forwarded(allowed []string, webSocket bool, identity []string) []string {
	all := slices.Concat(BaseHeaders, allowed)
	if webSocket {
		all = append(all, WebSocketHeaders...)
	}
	out := make([]string, 0, len(all))
	for _, h := range all {
		if _, id := slices.BinarySearch(identity, h); !id {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AnonymousClient is the rate-limit client of a request without a token: its trusted client
// address (MetaClient), in authz's answers and on Envoy's tokenless routes alike.
func AnonymousClient(addr string) string { return AnonymousClientPrefix + addr }

// AnonymousClientPrefix starts every AnonymousClient.
const AnonymousClientPrefix = "ip:"

// WebSocketHeaders reach the backend of a WebSocket route (Route.WebSocket): the handshake
// (RFC 6455), and Origin, by which a WebSocket server refuses other sites' pages.
var WebSocketHeaders = []string{
	"connection", "origin", "sec-websocket-extensions", "sec-websocket-key", "sec-websocket-protocol",
	"sec-websocket-version", "upgrade",
}

// Allowed reports whether a lower-case header name may reach the backend of r: the rule of
// Forwarded, the identity headers aside.
func (r Route) Allowed(name string) bool {
	_, base := slices.BinarySearch(BaseHeaders, name)
	if base {
		return true
	}
	if r.WebSocket {
		if _, ws := slices.BinarySearch(WebSocketHeaders, name); ws {
			return true
		}
	}
	_, ok := slices.BinarySearch(r.Headers, name)
	return ok
}

// HasQueryToken reports whether the query of path has an access_token parameter, as any
// backend framework might read it: the name decoded, in any case, separated by & or ;.
func HasQueryToken(path string) bool {
	_, query, ok := strings.Cut(path, "?")
	if !ok {
		return false
	}
	query, _, _ = strings.Cut(query, "#")
	for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(kv, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if strings.EqualFold(strings.TrimSpace(name), QueryTokenParam) {
			return true
		}
	}
	return false
}
