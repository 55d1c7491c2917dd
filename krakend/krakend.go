// Package krakend converts a KrakenD v3 configuration (krakend.json) into a spec set: one
// OpenAPI description per backend host, with the x-specgate policy the configuration states,
// and a gateway.yaml. What specgate cannot express is reported, one line per endpoint and
// feature, never dropped silently.
package krakend

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/config"
)

// Config is the part of a KrakenD v3 configuration the importer reads.
type Config struct {
	Version     int                        `json:"version"`
	Endpoints   []Endpoint                 `json:"endpoints"`
	ExtraConfig map[string]json.RawMessage `json:"extra_config"`
	AsyncAgent  json.RawMessage            `json:"async_agent"`
}

// Endpoint is one KrakenD endpoint.
type Endpoint struct {
	Endpoint     string                     `json:"endpoint"`
	Method       string                     `json:"method"`
	Timeout      string                     `json:"timeout"`
	InputHeaders []string                   `json:"input_headers"`
	Backend      []Backend                  `json:"backend"`
	ExtraConfig  map[string]json.RawMessage `json:"extra_config"`
}

// Backend is one backend of an endpoint.
type Backend struct {
	Host        []string                   `json:"host"`
	URLPattern  string                     `json:"url_pattern"`
	Method      string                     `json:"method"`
	Mapping     map[string]string          `json:"mapping"`
	Allow       []string                   `json:"allow"`
	Deny        []string                   `json:"deny"`
	Group       string                     `json:"group"`
	Target      string                     `json:"target"`
	ExtraConfig map[string]json.RawMessage `json:"extra_config"`
}

type validator struct {
	Alg                string     `json:"alg"`
	JWKURL             string     `json:"jwk_url"`
	Issuer             string     `json:"issuer"`
	Audience           []string   `json:"audience"`
	Roles              []string   `json:"roles"`
	RolesKey           string     `json:"roles_key"`
	Scopes             []string   `json:"scopes"`
	ScopesKey          string     `json:"scopes_key"`
	ScopesMatcher      string     `json:"scopes_matcher"`
	DisableJWKSecurity bool       `json:"disable_jwk_security"`
	PropagateClaims    [][]string `json:"propagate_claims"`
}

type routerLimit struct {
	MaxRate       float64 `json:"max_rate"`
	Every         string  `json:"every"`
	ClientMaxRate float64 `json:"client_max_rate"`
	Strategy      string  `json:"strategy"`
	Key           string  `json:"key"`
}

type cors struct {
	AllowOrigins     []string `json:"allow_origins"`
	AllowHeaders     []string `json:"allow_headers"`
	ExposeHeaders    []string `json:"expose_headers"`
	AllowCredentials bool     `json:"allow_credentials"`
	MaxAge           string   `json:"max_age"`
}

type revoker struct {
	N float64 `json:"N"`
	P float64 `json:"P"`
}

// Result is a converted configuration: the files of the spec set (name → content, a
// gateway.yaml among them) and the report of what was left out.
type Result struct {
	Files  map[string][]byte
	Report []string
}

// ErrNotKrakenD: the input is not a KrakenD v3 configuration.
var ErrNotKrakenD = errors.New("not a KrakenD v3 configuration (version 3 with endpoints)")

// Convert turns a krakend.json into a spec set.
func Convert(b []byte) (*Result, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotKrakenD, err)
	}
	if c.Version != 3 || c.Endpoints == nil {
		return nil, ErrNotKrakenD
	}
	cv := &converter{services: map[string]*service{}, issuers: map[string]config.Issuer{}, audience: map[string][]string{}}
	cv.global(c)
	for _, e := range c.Endpoints {
		cv.endpoint(e)
	}
	return cv.result()
}

type converter struct {
	services map[string]*service // by backend URL
	// guard names a global namespace that may protect endpoints (an auth plugin): then no
	// endpoint is imported, none could be left open by its absence.
	guard    string
	audience map[string][]string // the audiences of each issuer, as its first endpoint set them
	issuers  map[string]config.Issuer
	claims   config.Claims
	cors     *cors
	revoker  *revoker
	report   []string
}

type service struct {
	name, backend string
	paths         map[string]map[string]any // path → method → operation
	schemes       bool
}

func (cv *converter) lost(where, format string, a ...any) {
	cv.report = append(cv.report, where+": "+fmt.Sprintf(format, a...))
}

func (cv *converter) global(c Config) {
	if len(c.AsyncAgent) > 0 && string(c.AsyncAgent) != "null" {
		cv.lost("async_agent", "async agents (queue consumers) have no equivalent: specgate routes HTTP requests only")
	}
	for _, ns := range slices.Sorted(maps.Keys(c.ExtraConfig)) {
		raw := c.ExtraConfig[ns]
		switch ns {
		case "security/cors":
			cv.cors = &cors{}
			_ = json.Unmarshal(raw, cv.cors)
		case "auth/revoker":
			cv.revoker = &revoker{}
			_ = json.Unmarshal(raw, cv.revoker)
		default:
			if guards(ns) {
				cv.guard = ns
				cv.lost("extra_config "+ns, "may protect endpoints, and has no equivalent: no endpoint is imported")
				continue
			}
			cv.lost("extra_config "+ns, "not imported (no equivalent, or set it in gateway.yaml by hand)")
		}
	}
}

// guards reports whether a namespace may refuse requests (authentication, authorization,
// policies, scripts, plugins): an endpoint that has it is not imported rather than opened.
func guards(ns string) bool {
	switch {
	case ns == "auth/validator", ns == "auth/signer", ns == "auth/revoker":
		return false
	case strings.HasPrefix(ns, "auth/"), strings.HasPrefix(ns, "security/policies"), strings.HasPrefix(ns, "validation/cel"),
		strings.HasPrefix(ns, "plugin/"), strings.HasPrefix(ns, "modifier/lua"), strings.HasPrefix(ns, "modifier/jmespath"):
		return true
	}
	return false
}

var (
	hostName  = regexp.MustCompile(`[^a-z0-9-]+`)
	pathParam = regexp.MustCompile(`\{([^}]+)\}`)
)

func (cv *converter) endpoint(e Endpoint) {
	method := strings.ToUpper(cmp.Or(e.Method, "GET"))
	where := method + " " + e.Endpoint
	if cv.guard != "" {
		cv.lost(where, "skipped: the global %s may protect it", cv.guard)
		return
	}
	for _, ns := range slices.Sorted(maps.Keys(e.ExtraConfig)) {
		if guards(ns) {
			cv.lost(where, "skipped: extra_config %s may refuse requests, and has no equivalent", ns)
			return
		}
	}
	if len(e.Backend) != 1 {
		cv.lost(where, "%d backends (aggregation) have no equivalent: one operation routes to one backend; skipped", len(e.Backend))
		return
	}
	b := e.Backend[0]
	if len(b.Host) == 0 {
		cv.lost(where, "a backend without host; skipped")
		return
	}
	u, err := url.Parse(b.Host[0])
	if err != nil || u.Host == "" {
		cv.lost(where, "backend host %q is not a URL; skipped", b.Host[0])
		return
	}
	if len(b.Host) > 1 {
		cv.lost(where, "backend hosts beyond the first (%s) are dropped: point the spec at a Service that balances them", strings.Join(b.Host[1:], ", "))
	}
	if p := cmp.Or(b.URLPattern, e.Endpoint); p != e.Endpoint {
		cv.lost(where, "url_pattern %s differs from the endpoint: specgate forwards the gateway path (or strips a basePath); the backend must serve %s", p, e.Endpoint)
	}
	if bm := strings.ToUpper(b.Method); bm != "" && bm != method {
		cv.lost(where, "backend method %s differs from the endpoint's: the request keeps its method", bm)
	}
	for feature, present := range map[string]bool{"mapping": len(b.Mapping) > 0, "allow": len(b.Allow) > 0, "deny": len(b.Deny) > 0,
		"group": b.Group != "", "target": b.Target != ""} {
		if present {
			cv.lost(where, "backend %s (response manipulation) has no equivalent: the backend's response is passed as is", feature)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(b.ExtraConfig)) {
		cv.lost(where, "backend extra_config %s has no equivalent", ns)
	}
	backend := u.Scheme + "://" + u.Host
	svc := cv.services[backend]
	if svc == nil {
		name := strings.Trim(hostName.ReplaceAllString(strings.ToLower(u.Hostname()), "-"), "-")
		name = strings.TrimSuffix(name[:min(len(name), 55)], "-")
		for n := 2; slices.ContainsFunc(slices.Collect(maps.Values(cv.services)), func(o *service) bool { return o.name == name }); n++ {
			name = fmt.Sprintf("%s-%d", strings.TrimRight(name, "0123456789-"), n) // another port or scheme of the host
		}
		svc = &service{name: name, backend: backend, paths: map[string]map[string]any{}}
		cv.services[backend] = svc
	}
	op := map[string]any{"operationId": strings.Trim(hostName.ReplaceAllString(strings.ToLower(where), "-"), "-"),
		"responses": map[string]any{"200": map[string]any{"description": "ok"}}}
	var params []any
	for _, m := range pathParam.FindAllStringSubmatch(e.Endpoint, -1) {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	if params != nil {
		op["parameters"] = params
	}
	ext := map[string]any{}
	if e.Timeout != "" {
		if _, err := time.ParseDuration(e.Timeout); err == nil {
			ext["timeout"] = e.Timeout
		} else {
			cv.lost(where, "timeout %q is not a duration", e.Timeout)
		}
	}
	if len(e.InputHeaders) > 0 {
		if slices.Contains(e.InputHeaders, "*") {
			cv.lost(where, `input_headers ["*"] has no equivalent: list the headers the backend needs (specgate forwards a base set and those)`)
		} else {
			ext["allowedHeaders"] = e.InputHeaders
		}
	}
	op["security"] = []any{}
	for _, ns := range slices.Sorted(maps.Keys(e.ExtraConfig)) {
		raw := e.ExtraConfig[ns]
		switch ns {
		case "auth/validator":
			sec, ok := cv.validator(where, raw)
			if !ok {
				// Never left open: an endpoint whose authentication cannot be imported is
				// not imported at all.
				cv.lost(where, "skipped: its auth/validator cannot be imported (above)")
				return
			}
			op["security"], svc.schemes = sec, true
		case "qos/ratelimit/router":
			if limits := cv.rateLimits(where, raw); limits != nil {
				ext["rateLimits"] = limits
			}
		case "proxy":
			var p struct {
				Sequential bool `json:"sequential"`
				Static     any  `json:"static"`
			}
			_ = json.Unmarshal(raw, &p)
			if p.Sequential {
				cv.lost(where, "proxy sequential (chained backend calls) has no equivalent")
			}
			if p.Static != nil {
				cv.lost(where, "proxy static responses have no equivalent")
			}
		default:
			cv.lost(where, "extra_config %s has no equivalent", ns)
		}
	}
	if len(ext) > 0 {
		op["x-specgate"] = ext
	}
	if svc.paths[e.Endpoint] == nil {
		svc.paths[e.Endpoint] = map[string]any{}
	}
	svc.paths[e.Endpoint][strings.ToLower(method)] = op
}

// validator maps auth/validator: the issuer goes to gateway.yaml, roles or scopes become the
// operation's security requirement (any role: alternatives; scopes_matcher all: one). Not ok:
// the endpoint's authentication cannot be imported.
func (cv *converter) validator(where string, raw json.RawMessage) ([]any, bool) {
	var v validator
	if err := json.Unmarshal(raw, &v); err != nil {
		cv.lost(where, "auth/validator does not read as KrakenD's (%v)", err)
		return nil, false
	}
	alg := cmp.Or(v.Alg, "RS256")
	switch {
	case strings.HasPrefix(alg, "HS"):
		cv.lost(where, "auth/validator alg %s (a shared secret) has no equivalent: specgate verifies asymmetric signatures from a JWKS", alg)
		return nil, false
	case v.JWKURL == "" || v.Issuer == "":
		cv.lost(where, "auth/validator without jwk_url and issuer has no equivalent: specgate pins each token's issuer and its JWKS")
		return nil, false
	case v.DisableJWKSecurity:
		cv.lost(where, "auth/validator disable_jwk_security is dropped: the JWKS is fetched with TLS verification")
	}
	// specgate checks one audience list per issuer: an endpoint that wants other audiences
	// than the issuer's first would accept more tokens, so it is not imported.
	aud := slices.Sorted(slices.Values(v.Audience))
	if first, seen := cv.audience[v.Issuer]; seen && !slices.Equal(first, aud) {
		cv.lost(where, "auth/validator audience %v differs from %v, which another endpoint of issuer %s wants: specgate checks one audience list per issuer", aud, first, v.Issuer)
		return nil, false
	}
	cv.audience[v.Issuer] = aud
	is := cv.issuers[v.Issuer]
	is.Issuer, is.JWKSURI, is.Audiences = v.Issuer, v.JWKURL, aud
	if !slices.Contains(is.Algorithms, alg) {
		is.Algorithms = append(is.Algorithms, alg)
	}
	cv.issuers[v.Issuer] = is
	if len(v.PropagateClaims) > 0 {
		cv.lost(where, "auth/validator propagate_claims: set gateway.yaml claimHeaders to the same claims by hand")
	}
	names, key := v.Scopes, cmp.Or(v.ScopesKey, "scope")
	if len(v.Roles) > 0 {
		if len(v.Scopes) > 0 {
			cv.lost(where, "auth/validator has roles and scopes: the roles are kept, the scopes dropped")
		}
		names, key = v.Roles, cmp.Or(v.RolesKey, "roles")
	}
	if len(names) > 0 {
		if cv.claims.Scope != nil && !slices.Equal(cv.claims.Scope, config.ClaimNames{key}) {
			cv.lost(where, "roles or scopes read from claim %q, another endpoint's from %q: gateway.yaml claims.scope takes one; %q is used", key, cv.claims.Scope[0], cv.claims.Scope[0])
		} else {
			cv.claims.Scope = config.ClaimNames{key}
		}
	}
	if len(names) == 0 {
		return []any{map[string]any{"jwt": []any{}}}, true
	}
	if v.ScopesMatcher == "all" && len(v.Roles) == 0 {
		return []any{map[string]any{"jwt": names}}, true
	}
	var alts []any
	for _, n := range names {
		alts = append(alts, map[string]any{"jwt": []any{n}})
	}
	return alts, true
}

// rateLimits maps qos/ratelimit/router: max_rate per every for the route, client_max_rate
// per client address or per header value.
func (cv *converter) rateLimits(where string, raw json.RawMessage) []any {
	var r routerLimit
	_ = json.Unmarshal(raw, &r)
	per := map[string]string{"": "second", "1s": "second", "1m": "minute", "60s": "minute", "1h": "hour", "60m": "hour", "24h": "day"}[r.Every]
	if per == "" {
		cv.lost(where, "qos/ratelimit/router every %q: specgate counts per second, minute, hour or day; not imported", r.Every)
		return nil
	}
	whole := func(f float64) (int, bool) { return int(f), f == float64(int(f)) && f >= 1 }
	var limits []any
	if r.MaxRate > 0 {
		if n, ok := whole(r.MaxRate); ok {
			limits = append(limits, map[string]any{"requests": n, "per": per, "key": "route"})
		} else {
			cv.lost(where, "max_rate %g is not a whole number of requests per %s; not imported", r.MaxRate, per)
		}
	}
	if r.ClientMaxRate > 0 {
		n, ok := whole(r.ClientMaxRate)
		key := "ip"
		switch r.Strategy {
		case "", "ip":
		case "header":
			key = "header:" + r.Key
		default:
			cv.lost(where, "client rate limit strategy %q has no equivalent (ip or header); not imported", r.Strategy)
			ok = false
		}
		if ok {
			limits = append(limits, map[string]any{"requests": n, "per": per, "key": key})
		} else if r.Strategy == "" || r.Strategy == "ip" || r.Strategy == "header" {
			cv.lost(where, "client_max_rate %g is not a whole number of requests per %s; not imported", r.ClientMaxRate, per)
		}
	}
	return limits
}

func (cv *converter) result() (*Result, error) {
	res := &Result{Files: map[string][]byte{}, Report: cv.report}
	for _, backend := range slices.Sorted(maps.Keys(cv.services)) {
		svc := cv.services[backend]
		name := svc.name
		if len(svc.paths) == 0 {
			continue // every endpoint of the host was skipped
		}
		ext := map[string]any{"service": svc.name, "backend": svc.backend}
		if c := cv.cors; c != nil && len(c.AllowOrigins) > 0 {
			co := map[string]any{"allowOrigins": c.AllowOrigins}
			if len(c.AllowHeaders) > 0 {
				co["allowHeaders"] = c.AllowHeaders
			}
			if len(c.ExposeHeaders) > 0 {
				co["exposeHeaders"] = c.ExposeHeaders
			}
			if c.AllowCredentials {
				co["allowCredentials"] = true
			}
			if _, err := time.ParseDuration(c.MaxAge); err == nil {
				co["maxAge"] = c.MaxAge
			}
			ext["cors"] = co
		}
		doc := map[string]any{
			"openapi":    "3.1.0",
			"info":       map[string]any{"title": svc.name, "version": "imported from krakend.json"},
			"x-specgate": ext,
			"paths":      svc.paths,
		}
		if svc.schemes {
			doc["components"] = map[string]any{"securitySchemes": map[string]any{"jwt": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			return nil, err
		}
		res.Files["specs/"+name+".yaml"] = append([]byte("# Imported from a KrakenD configuration by specgate import krakend.\n"), b...)
	}
	gw := map[string]any{}
	if len(cv.issuers) > 0 {
		var issuers []any
		for _, k := range slices.Sorted(maps.Keys(cv.issuers)) {
			is := cv.issuers[k]
			issuers = append(issuers, map[string]any{"issuer": is.Issuer, "jwksUri": is.JWKSURI, "audiences": is.Audiences, "algorithms": is.Algorithms})
		}
		gw["issuers"] = issuers
	}
	if cv.claims.Scope != nil {
		gw["claims"] = map[string]any{"scope": cv.claims.Scope[0]}
	}
	if r := cv.revoker; r != nil && r.N >= 1 && r.P > 0 && r.P < 1 {
		gw["revocation"] = map[string]any{"expectedEntries": int(r.N), "falsePositiveRate": r.P}
	}
	b, err := yaml.Marshal(gw)
	if err != nil {
		return nil, err
	}
	res.Files["gateway.yaml"] = append([]byte("# Imported from a KrakenD configuration: set revocation.store and the listeners for your cluster.\n"), b...)
	return res, nil
}
