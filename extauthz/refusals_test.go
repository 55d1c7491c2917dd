package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/test/harness/testenvoy"
)

// A refused token's 401 says which check failed; the log says it at Info with the token's
// iss, aud and kid (never the token), once a second per reason; the refused issuers and
// audiences are counted, a bounded number of values each.
func TestRefusalsSayWhy(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	var logs testenvoy.LogBuffer
	s, c := startServer(t, deps{cfg: testConfig(p), log: slog.New(slog.NewJSONHandler(&logs, nil))})
	now := time.Now()
	mintAs := func(iss, aud string, extra map[string]any) string {
		tok, err := devissuer.Mint(p.key, iss, aud, "alice", []string{"orders:read"}, time.Hour, extra)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	stranger := mustKey(t, "ES256")
	cases := []struct {
		name, tok, reason, says string
	}{
		{"untrusted issuer", mintAs("http://127.0.0.1:8080/realms/shop", testAud, nil), verify.ReasonUnknownIssuer, "issuer (iss) is not trusted"},
		{"other audience", mintAs(testIss, "account", nil), verify.ReasonAudience, "audience (aud) is not accepted"},
		{"unknown key", mint(t, stranger, "alice", []string{"orders:read"}, nil), verify.ReasonUnknownKey, "signing key (kid) is not in its issuer's JWKS"},
		{"expired", mintAs(testIss, testAud, map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()}), verify.ReasonExpired, "has expired"},
		{"not yet valid", mintAs(testIss, testAud, map[string]any{"nbf": now.Add(time.Hour).Unix()}), verify.ReasonNotYetValid, "not valid yet"},
		{"malformed", "abc.def", verify.ReasonMalformed, "not a compact JWS"},
	}
	for _, tc := range cases {
		r := check(t, c, bearerReq(t, protectedRoute, tc.tok))
		var body struct {
			ErrorDescription string `json:"error_description"`
		}
		_ = json.Unmarshal([]byte(r.GetDeniedResponse().GetBody()), &body)
		if httpStatus(r) != 401 || !strings.Contains(body.ErrorDescription, tc.says) {
			t.Errorf("%s: %d %q, want 401 saying %q", tc.name, httpStatus(r), body.ErrorDescription, tc.says)
		}
	}
	out := logs.String()
	for _, tc := range cases {
		if !strings.Contains(out, `"reason":"`+tc.reason+`"`) {
			t.Errorf("no Info log of a %s refusal", tc.reason)
		}
		if strings.Contains(out, tc.tok) {
			t.Errorf("the log shows the %s token", tc.name)
		}
	}
	for _, want := range []string{`"level":"INFO","msg":"token refused"`, `"iss":"http://127.0.0.1:8080/realms/shop"`, `"aud":["account"]`,
		fmt.Sprintf(`"kid":%q`, stranger.KeyID())} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	// Fifty more of one reason: no more log lines this second, all counted.
	before := s.refusals.logged.Load()
	for i := range 50 {
		check(t, c, bearerReq(t, protectedRoute, mintAs(fmt.Sprintf("https://evil-%d.example/", i), testAud, nil)))
	}
	if n := s.refusals.logged.Load() - before; n > 1 {
		t.Errorf("%d log lines for 50 refusals of one reason within a second", n)
	}
	iss := map[string]float64{}
	for _, m := range gather(t, s, "specgate_authz_refused_claims_total") {
		if lbl(m, "claim") == "iss" {
			iss[lbl(m, "value")] += m.GetCounter().GetValue()
		}
	}
	if len(iss) != maxClaimValues+1 || iss[otherValue] < 30 || iss["http://127.0.0.1:8080/realms/shop"] != 1 {
		t.Errorf("refused issuers: %d values (want %d and other), other %v", len(iss), maxClaimValues+1, iss[otherValue])
	}
}

// A refused token's iss is counted as a metric label: a value of any bytes and length, cut
// where a character spans the limit, must never reach Prometheus as invalid UTF-8 (which
// panics, and would take authz down for any client).
func TestRefusedClaimValuesAreSafeLabels(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	s, c := startServer(t, deps{cfg: testConfig(p)})
	for _, iss := range []string{strings.Repeat("a", 127) + "é", "\xff\xfe", strings.Repeat("é", 200)} {
		tok, err := devissuer.Mint(p.key, iss, testAud, "alice", nil, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))); got != 401 {
			t.Errorf("iss %q: %d", iss, got)
		}
	}
	for _, m := range gather(t, s, "specgate_authz_refused_claims_total") {
		if v := lbl(m, "value"); !utf8.ValidString(v) || len(v) > 128 {
			t.Errorf("label value %q", v)
		}
	}
}

// With an access log, every answer carries its decision and reason in the dynamic metadata
// (denials too, which Envoy keeps), and with accessLog.subject: hash the subject's SHA-256.
func TestDecisionMetadataForTheAccessLog(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.AccessLog = config.AccessLog{Format: "json", Subject: "hash"}
	_, c := startServer(t, deps{cfg: cfg})
	md := check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", []string{"orders:read"}, nil))).GetDynamicMetadata().AsMap()
	sum := sha256.Sum256([]byte("alice"))
	if md["decision"] != "allow" || md["reason"] != "ok" || md["subject_hash"] != hex.EncodeToString(sum[:]) {
		t.Errorf("allow metadata %v", md)
	}
	md = check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", nil, nil))).GetDynamicMetadata().AsMap()
	if md["decision"] != "deny" || md["reason"] != "insufficient_scope" {
		t.Errorf("deny metadata %v", md)
	}
	// Without an access log, nothing is added.
	_, plain := startServer(t, deps{cfg: testConfig(p)})
	if md := check(t, plain, bearerReq(t, protectedRoute, mint(t, p.key, "alice", nil, nil))).GetDynamicMetadata(); md != nil {
		t.Errorf("metadata on a denial without an access log: %v", md)
	}
}

// authz.decisionLog: sampled decisions in authz's log, as JSON, with the route, decision,
// reason, issuer, kid, the subject as configured, and the latency; never the token.
func TestDecisionLog(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Authz.DecisionLog = config.DecisionLog{Sample: 1, Subject: "hash"}
	var logs testenvoy.LogBuffer
	_, c := startServer(t, deps{cfg: cfg, log: slog.New(slog.NewJSONHandler(&logs, nil))})
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	check(t, c, bearerReq(t, protectedRoute, tok))
	check(t, c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", nil, nil)))
	var lines []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "decision" {
			lines = append(lines, m)
		}
	}
	sum := sha256.Sum256([]byte("alice"))
	if len(lines) != 2 || lines[0]["decision"] != "allow" || lines[0]["reason"] != "ok" || lines[0]["route"] != protectedRoute.ID ||
		lines[0]["iss"] != testIss || lines[0]["kid"] != p.key.KeyID() || lines[0]["subject_hash"] != hex.EncodeToString(sum[:]) ||
		lines[0]["subject"] != nil || lines[0]["latency_us"] == nil {
		t.Fatalf("decision lines %v", lines)
	}
	if lines[1]["decision"] != "deny" || lines[1]["reason"] != "insufficient_scope" || lines[1]["subject_hash"] != nil {
		t.Errorf("denial line %v", lines[1])
	}
	if strings.Contains(logs.String(), tok) {
		t.Error("the log shows the token")
	}
}
