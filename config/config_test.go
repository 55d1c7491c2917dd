package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDesignExample(t *testing.T) {
	g, err := Parse([]byte(`
listeners: {public: 8080, internal: 8081}
issuers:
  - issuer: https://auth.example.com/
    jwksUri: https://auth.example.com/.well-known/jwks.json
    audiences: [api]
    algorithms: [RS256, ES256, EdDSA]
claims: {subject: sub, client: client_id, scope: scope}
claimHeaders: {X-User-Id: sub, X-Client-Id: client_id}
revocation: {store: redis://127.0.0.1:6379/0, expectedEntries: 10000000, falsePositiveRate: 1e-7, maxTokenLifetime: 24h}
rateLimit: {store: memory, failOpen: true}
authz: {failOpen: false, timeout: 200ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	if g.Revocation.MaxTokenLifetime.Duration != 24*time.Hour || g.Authz.Timeout.Duration != 200*time.Millisecond ||
		len(g.Issuers) != 1 || !g.RateLimit.FailsOpen() {
		t.Fatalf("parsed %+v", g)
	}
	// Listeners given without a body limit keep the default one.
	if g.Listeners.MaxRequestBodyBytes != 1<<20 {
		t.Fatalf("maxRequestBodyBytes %d, want the 1 MiB default", g.Listeners.MaxRequestBodyBytes)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":  "listners: {public: 1}",
		"hmac alg":     "issuers: [{issuer: x, algorithms: [HS256]}]",
		"none alg":     "issuers: [{issuer: x, algorithms: [none]}]",
		"bad duration": "authz: {timeout: soon}",
		"bad store":    "rateLimit: {store: postgres://x}",
		"same ports":   "listeners: {public: 80, internal: 80}",
		"dup issuer":   "issuers: [{issuer: x}, {issuer: x}]",
		"bad jwks":     "issuers: [{issuer: x, jwksUri: 'ftp://x'}]",
		"zero fp rate": "revocation: {falsePositiveRate: 0}",
		"long cache":   "authz: {decisionCacheTTL: 1m}",
		"neg cache":    "authz: {decisionCacheTTL: -1s}",
		"no body":      "listeners: {maxRequestBodyBytes: 0}",
		"huge body":    "listeners: {maxRequestBodyBytes: 67108865}",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted %q", name, doc)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%s: empty error", name)
		}
	}
}

func TestClaimHeadersReplaceDefaults(t *testing.T) {
	g, err := Parse([]byte("claimHeaders: {X-Subject: sub}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.ClaimHeaders) != 1 || !slices.Equal(g.ClaimHeaders["X-Subject"], ClaimNames{"sub"}) {
		t.Fatalf("claimHeaders %v, want only X-Subject", g.ClaimHeaders)
	}
	if g, _ := Parse([]byte("listeners: {public: 1, internal: 2}")); len(g.ClaimHeaders) != 2 {
		t.Fatalf("defaults lost: %v", g.ClaimHeaders)
	}
}

// A claim is one name or an ordered list of them; the defaults fit the common IdPs.
func TestClaimNames(t *testing.T) {
	g, err := Parse([]byte("claims: {subject: oid, client: [cid, appid]}\nclaimHeaders: {X-Client-Id: [cid, appid]}"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Claims.Subject, ClaimNames{"oid"}) || !slices.Equal(g.Claims.Client, ClaimNames{"cid", "appid"}) ||
		!slices.Equal(g.Claims.Scope, ClaimNames{"scope", "scp"}) || !slices.Equal(g.ClaimHeaders["X-Client-Id"], ClaimNames{"cid", "appid"}) {
		t.Errorf("claims %+v, headers %v", g.Claims, g.ClaimHeaders)
	}
	d := Default()
	if !slices.Equal(d.Claims.Client, ClaimNames{"client_id", "azp"}) || !slices.Equal(d.ClaimHeaders["X-Client-Id"], ClaimNames{"client_id", "azp"}) {
		t.Errorf("default client claims %v / %v, want client_id then azp", d.Claims.Client, d.ClaimHeaders["X-Client-Id"])
	}
	if g, err := Parse([]byte(`claims: {client: "", subject: null}`)); err != nil || len(g.Claims.Client) != 0 || !slices.Equal(g.Claims.Subject, ClaimNames{"sub"}) {
		t.Errorf(`client "" (none) and subject null (the default): %v %+v`, err, g.Claims)
	}
	for _, bad := range []string{"claims: {client: 3}", "claims: {subject: []}", `claims: {subject: ""}`, "claims: {scope: [scope, \"\"]}", "claimHeaders: {X-A: []}"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// authz.failOpen lets requests through untouched when authz cannot be asked: a client's own
// copy of any identity header, the issuer header included, would reach the backends.
func TestFailOpenNeedsNoIdentityHeaders(t *testing.T) {
	if _, err := Parse([]byte("authz: {failOpen: true}\nclaimHeaders: {}\nissuerHeader: \"\"")); err != nil {
		t.Fatalf("failOpen without identity headers refused: %v", err)
	}
	for _, bad := range []string{"authz: {failOpen: true}", "authz: {failOpen: true}\nclaimHeaders: {}"} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "X-Token-Issuer") {
			t.Errorf("%q: %v, want failOpen refused naming X-Token-Issuer", bad, err)
		}
	}
}

func TestDecisionCacheOffByDefault(t *testing.T) {
	g, err := Parse([]byte("authz: {timeout: 100ms}"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Authz.DecisionCacheTTL.Duration != 0 {
		t.Fatalf("decisionCacheTTL defaults to %s, want 0 (ask authz every time)", g.Authz.DecisionCacheTTL)
	}
	if g, err = Parse([]byte("authz: {decisionCacheTTL: 250ms}")); err != nil || g.Authz.DecisionCacheTTL.Duration != 250*time.Millisecond {
		t.Fatalf("decisionCacheTTL 250ms: %v %v", g.Authz.DecisionCacheTTL, err)
	}
}

// accessLog: its settings need format json, and each has its range.
func TestAccessLogConfig(t *testing.T) {
	if g, err := Parse([]byte("accessLog: {format: json, sample: 0.01, subject: hash}")); err != nil || g.AccessLog.Sample != 0.01 {
		t.Errorf("valid access log: %v %+v", err, g.AccessLog)
	}
	for _, bad := range []string{"accessLog: {format: text}", "accessLog: {format: json, sample: 1.5}",
		"accessLog: {format: json, subject: sha1}", "accessLog: {sample: 0.5}", "accessLog: {query: true}",
		"authz: {decisionLog: {sample: 2}}", "authz: {decisionLog: {sample: 0.1, subject: md5}}"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// tracing: off unless otlp is set; sampling defaults to 1 % and has its range.
func TestTracingConfig(t *testing.T) {
	g, err := Parse([]byte("tracing: {otlp: 'collector:4317'}"))
	if err != nil || g.Tracing.SampleRate() != 0.01 {
		t.Errorf("valid tracing: %v, sampling %v", err, g.Tracing.SampleRate())
	}
	for _, bad := range []string{"tracing: {sampling: 0.5}", "tracing: {gcpProject: p}", "tracing: {otlp: collector}",
		"tracing: {otlp: 'collector:4317', sampling: 1.5}", "tracing: {otlp: 'collector:4317', sampling: -1}"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
