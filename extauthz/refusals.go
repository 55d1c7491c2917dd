package extauthz

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/specgate/specgate/extauthz/verify"
)

// deniedByReason is the 401 of each refusal reason, whose error_description names the check
// that failed so that a client (and whoever reads its logs) can act on it. It never carries a
// secret nor the token. Reasons not listed answer "the access token is invalid".
var deniedByReason = func() map[string]*authv3.CheckResponse {
	m := map[string]*authv3.CheckResponse{}
	for reason, desc := range map[string]string{
		verify.ReasonUnknownIssuer: "the access token's issuer (iss) is not trusted",
		verify.ReasonAudience:      "the access token's audience (aud) is not accepted",
		verify.ReasonUnknownKey:    "the access token's signing key (kid) is not in its issuer's JWKS",
		verify.ReasonAlgorithm:     "the access token's signing algorithm (alg) is not accepted for its issuer or key",
		verify.ReasonTokenType:     "the access token's type (typ) is not accepted",
		verify.ReasonExpired:       "the access token has expired",
		verify.ReasonNotYetValid:   "the access token is not valid yet (nbf or iat is in the future)",
		verify.ReasonMissingClaim:  "the access token lacks a required claim (exp, iat)",
		verify.ReasonLifetime:      "the access token's lifetime (exp - iat) is longer than the gateway accepts",
		verify.ReasonMalformed:     "the access token is not a compact JWS",
		verify.ReasonBadHeader:     `the Authorization header must be "Bearer <token>"`,
		reasonRevoked:              "the access token has been revoked",
	} {
		m[reason] = denied(http.StatusUnauthorized, `Bearer error="invalid_token"`, "invalid_token", desc)
	}
	return m
}()

func deniedFor(reason string) *authv3.CheckResponse {
	if r := deniedByReason[reason]; r != nil {
		return r
	}
	return deniedInvalid
}

// maxClaimValues bounds the distinct iss and aud values the refusal metric keeps each (a
// client chooses them); later ones count as otherValue.
const maxClaimValues = 20

// refusals tells operators which tokens are refused and why: a log line at Info per reason
// at most once a second (with how many were not logged), and the refused tokens' issuers and
// audiences counted in a bounded metric that `specgate stats` ranks. The claims are read
// without verification, to describe the token, never to trust it; the token is never logged.
type refusals struct {
	log     *slog.Logger
	counted *prometheus.CounterVec // claim (iss|aud), value

	mu     sync.Mutex
	last   map[string]time.Time // reason → last logged
	missed map[string]int       // reason → refusals not logged since
	values map[string]int       // claim → distinct values counted
	known  map[[2]string]bool
	now    func() time.Time
	// logged counts log lines, for tests.
	logged atomic.Int64
}

func newRefusals(log *slog.Logger, reg *prometheus.Registry, now func() time.Time) *refusals {
	r := &refusals{log: log, now: now, last: map[string]time.Time{}, missed: map[string]int{},
		values: map[string]int{}, known: map[[2]string]bool{},
		counted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "specgate_authz_refused_claims_total",
			Help: "Refused tokens by claim (iss, aud) and its value as the token states it, unverified; at most 20 values each, then \"(other)\".",
		}, []string{"claim", "value"})}
	reg.MustRegister(r.counted)
	return r
}

// note records a refused token.
func (r *refusals) note(raw, reason string, err error) {
	c := describe(raw)
	missed, throttled := r.throttled(reason, c)
	if throttled {
		return
	}
	r.logged.Add(1)
	r.log.Info("token refused", "reason", reason, "iss", c.Iss, "aud", c.aud(), "kid", c.Kid, "alg", c.Alg,
		"err", printable(errText(err)), "not_logged_since", missed)
}

// throttled counts the refused token's iss and aud, and reports whether its reason was logged
// less than a second ago; if not, it returns and resets the refusals of that reason not logged.
func (r *refusals) throttled(reason string, c claims) (missed int, throttled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count("iss", c.Iss)
	for _, a := range c.aud() {
		r.count("aud", a)
	}
	now := r.now()
	if now.Sub(r.last[reason]) < time.Second {
		r.missed[reason]++
		return 0, true
	}
	r.last[reason] = now
	missed, r.missed[reason] = r.missed[reason], 0
	return missed, false
}

// count adds one to claim=value, under r.mu. An absent claim is not counted.
func (r *refusals) count(claim, value string) {
	if value == "" {
		return
	}
	k := [2]string{claim, value}
	if !r.known[k] {
		if r.values[claim] >= maxClaimValues {
			k[1] = otherValue
		} else {
			r.known[k] = true
			r.values[claim]++
		}
	}
	r.counted.WithLabelValues(k[0], k[1]).Inc()
}

// otherValue counts the values beyond maxClaimValues; no URL or audience is spelled so.
const otherValue = "(other)"

// printable bounds a client-chosen value for a label or a log line: at most 128 bytes, cut
// before a character that would straddle the limit, valid UTF-8 (Prometheus panics on
// anything else).
func printable(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	if len(v) <= 128 {
		return v
	}
	cut := 128
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut]
}

// claims are what a refusal says of the token, unverified.
type claims struct {
	Kid, Alg string // header
	Iss      string
	Aud      any // a string or an array of strings
}

func (c claims) aud() []string {
	switch a := c.Aud.(type) {
	case string:
		return []string{printable(a)}
	case []any:
		var out []string
		for _, v := range a[:min(len(a), 8)] {
			if s, ok := v.(string); ok {
				out = append(out, printable(s))
			}
		}
		return out
	}
	return nil
}

func describe(raw string) claims {
	var c claims
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) == 0 {
		return c
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	c.Kid, _ = h.KeyID()
	if a, ok := h.Algorithm(); ok {
		c.Alg = a.String()
	}
	var p struct {
		Iss string `json:"iss"`
		Aud any    `json:"aud"`
	}
	_ = json.Unmarshal(msg.Payload(), &p)
	c.Iss, c.Aud, c.Kid, c.Alg = printable(p.Iss), p.Aud, printable(c.Kid), printable(c.Alg)
	return c
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
