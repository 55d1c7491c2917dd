package extauthz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
)

// leeway is the clock skew allowed on exp, nbf and iat.
const leeway = 30 * time.Second

// Deny reasons: the `reason` label of specgate_authz_checks_total. A small fixed set.
const (
	reasonOK             = "ok"
	reasonAnonymous      = "anonymous"
	reasonMissing        = "missing_token"
	reasonBadHeader      = "malformed_header"
	reasonTooLarge       = "token_too_large"
	reasonMalformed      = "malformed_token"
	reasonInvalid        = "invalid_token" // signature, encoding, claims types
	reasonUnknownIssuer  = "unknown_issuer"
	reasonAlgorithm      = "algorithm"
	reasonTokenType      = "token_type"
	reasonUnknownKey     = "unknown_key"
	reasonExpired        = "expired"
	reasonNotYetValid    = "not_yet_valid"
	reasonMissingClaim   = "missing_claim"
	reasonAudience       = "audience"
	reasonLifetime       = "lifetime"
	reasonRevoked        = "revoked"
	reasonScope          = "insufficient_scope"
	reasonPolicy         = "policy_error"
	reasonQueryToken     = "query_token"
	reasonIssuerNotValid = "issuer_not_allowed"
	// reasonRevocationUnavailable: the revocation list has not loaded yet.
	reasonRevocationUnavailable = "revocations_unavailable"
)

// splitBearer extracts the token from an Authorization value, of at most max bytes. Only
// `Bearer <token>` with one space is accepted; Envoy joins repeated headers with ",", which
// fails tokenSyntax.
func splitBearer(v string, max int) (string, string) {
	tok, ok := strings.CutPrefix(v, "Bearer ")
	if !ok || tok == "" {
		return "", reasonBadHeader
	}
	if len(tok) > max {
		return "", reasonTooLarge
	}
	return tok, ""
}

// tokenSyntax checks the compact form: three canonical base64url segments ("" when fine).
func tokenSyntax(tok string) string {
	dots := 0
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == '.':
			dots++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return reasonMalformed
		}
	}
	if dots != 2 {
		return reasonMalformed
	}
	for _, seg := range strings.Split(tok, ".") {
		if !canonicalBase64URL(seg) {
			return reasonMalformed
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

// identity is what a verified token tells the gateway. Immutable once built; the token
// cache shares it between requests.
type identity struct {
	issuer  string
	subject string
	client  string // rate-limit client key: sub:<subject> or cid:<client id>, qualified
	// revokedAs is the subject as subject revocations name it: the bare subject with one
	// trusted issuer, <issuer>|<subject> with several (two issuers' alice are two people).
	revokedAs string
	jti       string
	content   [32]byte  // revocation.ContentHash of the token: its tok: revocation key
	iat       time.Time // zero when absent
	exp       time.Time
	scopes    []string // sorted
	plan      string   // quota plan (claims.plan, or an API key's)
	headers   []string // value per verifier.claimHeaders entry; "" when the claim is absent
	// keys and kid: the issuer's keys and the kid that verified the token. A cached token
	// stays valid only while its key is in the issuer's JWKS.
	keys *issuerKeys
	kid  string
}

// keyHeld reports whether the key that verified the token is still in its issuer's JWKS.
func (id *identity) keyHeld() bool {
	_, ok := lookupKey(id.keys.keys(), id.kid)
	return ok
}

func (id *identity) hasScopes(need []string) bool {
	for _, s := range need {
		if _, ok := slices.BinarySearch(id.scopes, s); !ok {
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
	keys      *issuerKeys
}

type claimHeader struct {
	name   string // canonical, as configured
	lower  string
	claims config.ClaimNames // the first the token carries gives the value
	client bool              // claims name a client claim: an API key's client goes here
}

// verifier checks signature and claims with jwx; it never accepts alg none or HMAC.
type verifier struct {
	issuers      map[string]*trustedIssuer
	claims       config.Claims
	claimHeaders []claimHeader // sorted by lower
	multiIssuer  bool          // several issuers are trusted: identities are issuer-qualified
	maxLifetime  time.Duration
	now          func() time.Time
}

var defaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

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

// reasonOf names a verification failure for metrics and logs.
func reasonOf(err error) string {
	var ve *verifyError
	switch {
	case errors.As(err, &ve):
		return ve.reason
	case errors.Is(err, errUnknownIssuer):
		return reasonUnknownIssuer
	case errors.Is(err, errAlgorithm):
		return reasonAlgorithm
	case errors.Is(err, errUnknownKey):
		return reasonUnknownKey
	case errors.Is(err, jwt.TokenExpiredError()):
		return reasonExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return reasonNotYetValid
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return reasonMissingClaim
	}
	return reasonInvalid
}

// verify checks a token's signature, issuer, audience, lifetime and builds its identity.
func (v *verifier) verify(ctx context.Context, raw string) (*identity, error) {
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
		return nil, fail(reasonUnknownIssuer, fmt.Errorf("iss %q", got))
	}
	// config.Validate requires audiences; an issuer without any accepts no token.
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(iss.audiences, a) }) {
		return nil, fail(reasonAudience, fmt.Errorf("aud %q", aud))
	}
	exp, _ := tok.Expiration()
	iat, _ := tok.IssuedAt()
	// A revocation entry lives maxTokenLifetime (plus slack) from the moment of revocation.
	// A token valid longer than that from its issue would escape a revocation once the entry
	// expires, so it is refused outright; hence iat is required too.
	if exp.Sub(iat) > v.maxLifetime {
		return nil, fail(reasonLifetime, fmt.Errorf("exp - iat = %s beyond maxTokenLifetime", exp.Sub(iat)))
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
			return fail(reasonInvalid, fmt.Errorf("%s: %w", what, err))
		}
		var obj map[string]jsontext.Value
		if err := jsonv2.Unmarshal(b, &obj); err != nil { // duplicate names are an error
			return fail(reasonInvalid, fmt.Errorf("%s: %w", what, err))
		}
		if _, crit := obj["crit"]; crit && i == 0 {
			return fail(reasonInvalid, errors.New("header: critical parameters (crit) are not supported"))
		}
	}
	return nil
}

// selectKey is the jws key provider: it trusts only configured issuers, only their allowed
// algorithms, and only keys whose type and declared alg fit the token's alg.
func (v *verifier) selectKey(ctx context.Context, sink jws.KeySink, sig *jws.Signature, msg *jws.Message) (*trustedIssuer, string, error) {
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		return nil, "", fail(reasonInvalid, err)
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
			return nil, "", fail(reasonTokenType, fmt.Errorf("typ %q, want %s", typ, iss.typ))
		}
	}
	kid, _ := hdrs.KeyID()
	set := iss.keys.keys()
	key, ok := lookupKey(set, kid)
	if !ok {
		// A kid we do not know: maybe the IdP rotated. One rate-limited refresh, then give up.
		if key, ok = lookupKey(iss.keys.forceRefresh(ctx), kid); !ok {
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

func (v *verifier) identity(tok jwt.Token, issuer string, exp time.Time) (*identity, error) {
	id := &identity{issuer: issuer, exp: exp}
	id.iat, _ = tok.IssuedAt()
	id.jti, _ = tok.JwtID()
	var err error
	if id.subject, err = stringClaim(tok, v.claims.Subject); err != nil {
		return nil, err
	}
	cid, err := stringClaim(tok, v.claims.Client)
	if err != nil {
		return nil, err
	}
	// Client rule: a client-credentials token (client claim present, and no subject or
	// the subject is the client itself) is keyed by client id; any other token by subject.
	switch {
	case cid != "" && (id.subject == "" || id.subject == cid):
		id.client = "cid:" + v.qualified(issuer, cid)
	case id.subject != "":
		id.client = "sub:" + v.qualified(issuer, id.subject)
	}
	if id.subject != "" {
		id.revokedAs = v.qualified(issuer, id.subject)
	}
	scopes, err := scopeClaim(tok, v.claims.Scope)
	if err != nil {
		return nil, err
	}
	slices.Sort(scopes)
	id.scopes = slices.Compact(scopes)
	id.plan = headerValue(tok, v.claims.Plan)
	id.headers = make([]string, len(v.claimHeaders))
	for i, h := range v.claimHeaders {
		id.headers[i] = headerValue(tok, h.claims)
	}
	return id, nil
}

// qualified names a subject or client id in rate-limit keys and subject revocations: as it
// is with one trusted issuer, as <issuer>|<name> with several, so that it is unique.
func (v *verifier) qualified(issuer, name string) string {
	if !v.multiIssuer {
		return name
	}
	return issuer + "|" + name
}

// mediaType is a typ value as RFC 7515 compares it: case-insensitive, "application/" optional.
func mediaType(typ string) string { return strings.TrimPrefix(strings.ToLower(typ), "application/") }
