// Package verify checks bearer tokens: their form, signature, issuer, audience, lifetime and
// claims, into the Identity the gateway passes on; and keeps verified tokens until they expire.
// The authz service and the Envoy plugin share it, so they decide alike.
package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
)

// leeway is the clock skew allowed on exp, nbf and iat.
const leeway = 30 * time.Second

// Reasons a token is refused: values of the `reason` label of specgate_authz_checks_total.
const (
	ReasonBadHeader     = "malformed_header"
	ReasonTooLarge      = "token_too_large"
	ReasonMalformed     = "malformed_token"
	ReasonInvalid       = "invalid_token" // signature, encoding, claims types
	ReasonUnknownIssuer = "unknown_issuer"
	ReasonAlgorithm     = "algorithm"
	ReasonTokenType     = "token_type"
	ReasonUnknownKey    = "unknown_key"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not_yet_valid"
	ReasonMissingClaim  = "missing_claim"
	ReasonAudience      = "audience"
	ReasonLifetime      = "lifetime"
)

// SplitBearer extracts the token from an Authorization value, of at most max bytes. Only
// `Bearer <token>` with one space is accepted; Envoy joins repeated headers with ",", which
// fails Syntax.
func SplitBearer(v string, max int) (string, string) {
	tok, ok := strings.CutPrefix(v, "Bearer ")
	if !ok || tok == "" {
		return "", ReasonBadHeader
	}
	if len(tok) > max {
		return "", ReasonTooLarge
	}
	return tok, ""
}

// Syntax checks the compact form: three canonical base64url segments ("" when fine).
func Syntax(tok string) string {
	dots := 0
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == '.':
			dots++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return ReasonMalformed
		}
	}
	if dots != 2 {
		return ReasonMalformed
	}
	for _, seg := range strings.Split(tok, ".") {
		if !canonicalBase64URL(seg) {
			return ReasonMalformed
		}
	}
	return ""
}

// canonicalBase64URL reports whether seg (already known to hold only base64url characters)
// is the one canonical unpadded encoding of its bytes. Decoders ignore the unused low bits of
// the last character, so without this check one signed token has several spellings, each
// with its own hash: a revocation by token hash would miss the others. O(1): only the length
// and the last character matter.
func canonicalBase64URL(seg string) bool {
	if seg == "" {
		return true
	}
	last := base64URLValue(seg[len(seg)-1])
	switch len(seg) % 4 {
	case 1:
		return false // never a valid length
	case 2:
		return last&0x0f == 0 // 4 unused bits
	case 3:
		return last&0x03 == 0 // 2 unused bits
	}
	return true
}

func base64URLValue(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63 // '_'
}

// Identity is what a verified token (or an API key) tells the gateway. Immutable once
// built; the token cache shares it between requests.
type Identity struct {
	Issuer  string
	Subject string
	Client  string // rate-limit client key: sub:<subject> or cid:<client id>, qualified
	// RevokedAs is the subject as subject revocations name it: the bare subject with one
	// trusted issuer, <issuer>|<subject> with several (two issuers' alice are two people).
	RevokedAs string
	JTI       string
	Content   [32]byte  // revocation.ContentHash of the token: its tok: revocation key
	IAT       time.Time // zero when absent
	Exp       time.Time
	Scopes    []string // sorted
	Plan      string   // quota plan (claims.plan, or an API key's)
	Headers   []string // value per Verifier.ClaimHeaders entry; "" when the claim is absent
	// keys and kid: the issuer's keys and the kid that verified the token. A cached token
	// stays valid only while its key is in the issuer's JWKS.
	keys Keys
	kid  string
}

// Keys is where an issuer's keys come from: fetched from the IdP in the authz service, fed
// by authz in the Envoy plugin.
type Keys interface {
	// Keys is the current key set, nil before the first one arrived.
	Keys() jwk.Set
	// ForceRefresh asks for the keys again (a token named a kid not held) and returns the
	// set held when it gives up waiting.
	ForceRefresh(ctx context.Context) jwk.Set
}

// KeyHeld reports whether the key that verified the token is still in its issuer's JWKS.
func (id *Identity) KeyHeld() bool {
	_, ok := lookupKey(id.keys.Keys(), id.kid)
	return ok
}

// HasScopes reports whether the identity holds every scope of need.
func (id *Identity) HasScopes(need []string) bool {
	for _, s := range need {
		if _, ok := slices.BinarySearch(id.Scopes, s); !ok {
			return false
		}
	}
	return true
}

type trustedIssuer struct {
	name      string
	audiences []string
	algs      map[string]bool
	typ       string // required header typ, lower case without "application/"; "" any
	keys      Keys
}

// ClaimHeader is an identity header (gateway.yaml claimHeaders, issuerHeader).
type ClaimHeader struct {
	Name   string // canonical, as configured
	Lower  string
	claims config.ClaimNames // the first the token carries gives the value
	Client bool              // claims name a client claim: an API key's client goes here
}

// Verifier checks signature and claims with jwx; it never accepts alg none or HMAC.
type Verifier struct {
	issuers      map[string]*trustedIssuer
	claims       config.Claims
	claimHeaders []ClaimHeader // sorted by lower
	multiIssuer  bool          // several issuers are trusted: identities are issuer-qualified
	maxLifetime  time.Duration
	now          func() time.Time
}

var defaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// New builds the verifier of gateway.yaml's issuers, claims and identity headers; keys gives
// each issuer's key source (jwksURI empty: OIDC discovery).
func New(cfg *config.Gateway, keys func(issuer, jwksURI string) Keys, now func() time.Time) *Verifier {
	v := &Verifier{issuers: map[string]*trustedIssuer{}, claims: cfg.Claims,
		maxLifetime: cfg.Revocation.MaxTokenLifetime.Duration, now: now}
	for h, c := range cfg.ClaimHeaders {
		client := slices.ContainsFunc(c, func(name string) bool { return slices.Contains(cfg.Claims.Client, name) })
		v.claimHeaders = append(v.claimHeaders, ClaimHeader{Name: h, Lower: strings.ToLower(h), claims: c, Client: client})
	}
	if h := cfg.IssuerHeader; h != "" {
		v.claimHeaders = append(v.claimHeaders, ClaimHeader{Name: h, Lower: strings.ToLower(h), claims: config.ClaimNames{"iss"}})
	}
	v.multiIssuer = len(cfg.Issuers) > 1
	slices.SortFunc(v.claimHeaders, func(a, b ClaimHeader) int { return strings.Compare(a.Lower, b.Lower) })
	for _, is := range cfg.Issuers {
		algs := is.Algorithms
		if len(algs) == 0 {
			algs = defaultAlgorithms
		}
		ti := &trustedIssuer{name: is.Issuer, audiences: is.Audiences, algs: map[string]bool{},
			typ: mediaType(is.RequireType), keys: keys(is.Issuer, is.JWKSURI)}
		for _, a := range algs {
			ti.algs[a] = true
		}
		v.issuers[is.Issuer] = ti
	}
	return v
}

// ClaimHeaders are the identity headers, sorted by lower-case name.
func (v *Verifier) ClaimHeaders() []ClaimHeader { return v.claimHeaders }

// IsClaimHeader reports whether name (lower case) is an identity header.
func (v *Verifier) IsClaimHeader(name string) bool {
	_, ok := slices.BinarySearchFunc(v.claimHeaders, name, func(h ClaimHeader, n string) int { return strings.Compare(h.Lower, n) })
	return ok
}

// Trusts reports whether iss is one of the configured issuers.
func (v *Verifier) Trusts(iss string) bool { return v.issuers[iss] != nil }

// Issuers are the configured issuers' names, sorted.
func (v *Verifier) Issuers() []string { return slices.Sorted(maps.Keys(v.issuers)) }

// IssuerKeys is the key source of a configured issuer (nil for any other).
func (v *Verifier) IssuerKeys(iss string) Keys {
	if ti := v.issuers[iss]; ti != nil {
		return ti.keys
	}
	return nil
}

// MultiIssuer reports whether several issuers are trusted: identities are issuer-qualified.
func (v *Verifier) MultiIssuer() bool { return v.multiIssuer }

// SubjectClaims are the claims a subject is read from, the first present wins.
func (v *Verifier) SubjectClaims() config.ClaimNames { return v.claims.Subject }

// Errors the key provider returns; verify maps them to reasons.
var (
	errUnknownIssuer = errors.New("untrusted issuer")
	errAlgorithm     = errors.New("algorithm not allowed")
	errUnknownKey    = errors.New("no key for kid")
)

type verifyError struct {
	reason string
	err    error
}

func (e *verifyError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

func fail(reason string, err error) error { return &verifyError{reason, err} }

// ReasonOf names a verification failure for metrics and logs.
func ReasonOf(err error) string {
	var ve *verifyError
	switch {
	case errors.As(err, &ve):
		return ve.reason
	case errors.Is(err, errUnknownIssuer):
		return ReasonUnknownIssuer
	case errors.Is(err, errAlgorithm):
		return ReasonAlgorithm
	case errors.Is(err, errUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, jwt.TokenExpiredError()):
		return ReasonExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return ReasonNotYetValid
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return ReasonMissingClaim
	}
	return ReasonInvalid
}

// Verify checks a token's signature, issuer, audience, lifetime and builds its identity.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	var (
		iss *trustedIssuer
		kid string
	)
	provider := jws.KeyProviderFunc(func(ctx context.Context, sink jws.KeySink, sig *jws.Signature, msg *jws.Message) error {
		var err error
		iss, kid, err = v.selectKey(ctx, sink, sig, msg)
		return err
	})
	tok, err := jwt.ParseString(raw,
		jwt.WithKeyProvider(provider),
		jwt.WithContext(ctx),
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithAcceptableSkew(leeway),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
	)
	if err != nil {
		return nil, err
	}
	if err := unambiguous(raw); err != nil {
		return nil, err
	}
	// The provider picked keys by the unverified iss; now that the payload is verified,
	// make sure it still names that issuer.
	if got, _ := tok.Issuer(); iss == nil || got != iss.name {
		return nil, fail(ReasonUnknownIssuer, fmt.Errorf("iss %q", got))
	}
	// config.Validate requires audiences; an issuer without any accepts no token.
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(iss.audiences, a) }) {
		return nil, fail(ReasonAudience, fmt.Errorf("aud %q", aud))
	}
	exp, _ := tok.Expiration()
	iat, _ := tok.IssuedAt()
	// A revocation entry lives maxTokenLifetime (plus slack) from the moment of revocation.
	// A token valid longer than that from its issue would escape a revocation once the entry
	// expires, so it is refused outright; hence iat is required too.
	if exp.Sub(iat) > v.maxLifetime {
		return nil, fail(ReasonLifetime, fmt.Errorf("exp - iat = %s beyond maxTokenLifetime", exp.Sub(iat)))
	}
	id, err := v.identity(tok, iss.name, exp)
	if err != nil {
		return nil, err
	}
	id.keys, id.kid = iss.keys, kid
	return id, nil
}

// unambiguous refuses a signed token that says two things, or asks for what authz does not
// do: a name twice in its header or payload (readers disagree on which one wins: the last one
// became X-User-Id), or critical header parameters (RFC 7515 4.1.11: reject what is not
// understood; authz understands none). Run on verified tokens only, once per token (cached).
func unambiguous(raw string) error {
	parts := strings.SplitN(raw, ".", 3)
	for i, what := range []string{"header", "payload"} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fail(ReasonInvalid, fmt.Errorf("%s: %w", what, err))
		}
		var obj map[string]jsontext.Value
		if err := jsonv2.Unmarshal(b, &obj); err != nil { // duplicate names are an error
			return fail(ReasonInvalid, fmt.Errorf("%s: %w", what, err))
		}
		if _, crit := obj["crit"]; crit && i == 0 {
			return fail(ReasonInvalid, errors.New("header: critical parameters (crit) are not supported"))
		}
	}
	return nil
}

// selectKey is the jws key provider: it trusts only configured issuers, only their allowed
// algorithms, and only keys whose type and declared alg fit the token's alg.
func (v *Verifier) selectKey(ctx context.Context, sink jws.KeySink, sig *jws.Signature, msg *jws.Message) (*trustedIssuer, string, error) {
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		return nil, "", fail(ReasonInvalid, err)
	}
	iss := v.issuers[claims.Iss]
	if iss == nil {
		return nil, "", errUnknownIssuer
	}
	hdrs := sig.ProtectedHeaders()
	alg, ok := hdrs.Algorithm()
	// The one guard in code against none and HMAC (config.Validate refuses them too): a
	// JWKS public key must never serve as an HMAC secret, whatever reached iss.algs.
	if !ok || !iss.algs[alg.String()] || alg == jwa.NoSignature() || strings.HasPrefix(alg.String(), "HS") {
		return nil, "", errAlgorithm
	}
	if iss.typ != "" {
		typ, _ := hdrs.Type()
		if mediaType(typ) != iss.typ {
			return nil, "", fail(ReasonTokenType, fmt.Errorf("typ %q, want %s", typ, iss.typ))
		}
	}
	kid, _ := hdrs.KeyID()
	set := iss.keys.Keys()
	key, ok := lookupKey(set, kid)
	if !ok {
		// A kid we do not know: maybe the IdP rotated. One rate-limited refresh, then give up.
		if key, ok = lookupKey(iss.keys.ForceRefresh(ctx), kid); !ok {
			return nil, "", errUnknownKey
		}
	}
	if !keyFits(key, alg) {
		return nil, "", errAlgorithm
	}
	sink.Key(alg, key)
	return iss, kid, nil
}

// lookupKey finds kid in set; a token without kid may use the set's only key.
func lookupKey(set jwk.Set, kid string) (jwk.Key, bool) {
	if set == nil {
		return nil, false
	}
	if kid == "" {
		if set.Len() == 1 {
			return set.Key(0)
		}
		return nil, false
	}
	return set.LookupKeyID(kid)
}

// keyFits checks the algorithm against the key: its declared alg if any, its type always
// (an RSA key can never verify an HMAC or EC signature).
func keyFits(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if a, ok := key.Algorithm(); ok && a.String() != alg.String() {
		return false
	}
	if use, ok := key.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
		return false
	}
	name := alg.String()
	switch key.KeyType() {
	case jwa.RSA():
		return strings.HasPrefix(name, "RS") || strings.HasPrefix(name, "PS")
	case jwa.EC():
		return strings.HasPrefix(name, "ES")
	case jwa.OKP():
		return name == "EdDSA" || name == "Ed25519"
	}
	return false
}

func (v *Verifier) identity(tok jwt.Token, issuer string, exp time.Time) (*Identity, error) {
	id := &Identity{Issuer: issuer, Exp: exp}
	id.IAT, _ = tok.IssuedAt()
	id.JTI, _ = tok.JwtID()
	var err error
	if id.Subject, err = StringClaim(tok, v.claims.Subject); err != nil {
		return nil, err
	}
	cid, err := StringClaim(tok, v.claims.Client)
	if err != nil {
		return nil, err
	}
	// Client rule: a client-credentials token (client claim present, and no subject or
	// the subject is the client itself) is keyed by client id; any other token by subject.
	switch {
	case cid != "" && (id.Subject == "" || id.Subject == cid):
		id.Client = "cid:" + v.Qualified(issuer, cid)
	case id.Subject != "":
		id.Client = "sub:" + v.Qualified(issuer, id.Subject)
	}
	if id.Subject != "" {
		id.RevokedAs = v.Qualified(issuer, id.Subject)
	}
	scopes, err := scopeClaim(tok, v.claims.Scope)
	if err != nil {
		return nil, err
	}
	slices.Sort(scopes)
	id.Scopes = slices.Compact(scopes)
	id.Plan = headerValue(tok, v.claims.Plan)
	id.Headers = make([]string, len(v.claimHeaders))
	for i, h := range v.claimHeaders {
		id.Headers[i] = headerValue(tok, h.claims)
	}
	return id, nil
}

// Qualified names a subject or client id in rate-limit keys and subject revocations: as it
// is with one trusted issuer, as <issuer>|<name> with several, so that it is unique.
func (v *Verifier) Qualified(issuer, name string) string {
	if !v.multiIssuer {
		return name
	}
	return issuer + "|" + name
}

// mediaType is a typ value as RFC 7515 compares it: case-insensitive, "application/" optional.
func mediaType(typ string) string { return strings.TrimPrefix(strings.ToLower(typ), "application/") }

// Dropped reports whether an allow removes the request header name (lower case) for the
// route does not allow it: not a pseudo-header, not host, not one the route allows, and not an
// identity header, which the allow sets or removes itself (ClaimHeaders, Identity.Headers).
// authz's answer and the Envoy plugin apply this one rule.
func (v *Verifier) Dropped(pol *policy.Route, name string) bool {
	return name != "" && name[0] != ':' && name != "host" && !pol.Allowed(name) && !v.IsClaimHeader(name)
}

// Meets reports whether id satisfies one of the token requirements anyOf (a requirement met
// by an API key never is), and whether one of them accepts its issuer at all.
func (id *Identity) Meets(anyOf []policy.Requirement) (met, issuerOK bool) {
	for _, req := range anyOf {
		if req.APIKey != nil || len(req.Issuers) > 0 && !slices.Contains(req.Issuers, id.Issuer) {
			continue
		}
		issuerOK = true
		if id.HasScopes(req.Scopes) {
			return true, true
		}
	}
	return false, issuerOK
}
