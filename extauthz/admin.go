package extauthz

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/internal/adminhttp"
)

// admin is the HTTP side: metrics, probes, the revocation API and the dev JWKS.
type admin struct {
	srv   *server
	list  *revocation.List
	token string
	dev   *devissuer.Key
	log   *slog.Logger

	// feedKeys is each issuer's JWKS as the feed last encoded it: every Envoy worker asks
	// every interval, and the set changes only when the IdP's does.
	feedMu   sync.Mutex
	feedKeys map[string]encodedKeys
}

type encodedKeys struct {
	set  jwk.Set
	json json.RawMessage
}

func (a *admin) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.srv.m.reg, promhttp.HandlerOpts{}))
	adminhttp.Probes(mux, a.ready)
	mux.HandleFunc("POST /v1/revocations", a.authorized(a.revoke))
	mux.HandleFunc("POST /v1/keys", a.authorized(a.createKey))
	mux.HandleFunc("GET /v1/keys", a.authorized(a.listKeys))
	mux.HandleFunc("DELETE /v1/keys/{id}", a.authorized(a.revokeKey))
	mux.Handle("GET "+feed.Path, adminhttp.RequireToken(feed.Credential(a.token), a.feed))
	if a.dev != nil {
		mux.Handle("GET "+devissuer.JWKSPath, devissuer.JWKS(a.dev))
	}
	return mux
}

// ready waits for the first load of the revocation set: a replica that has not read it
// would let revoked tokens through.
func (a *admin) ready() (map[string]string, error) {
	if !a.list.Set.Loaded() {
		return nil, errors.New("revocation set not loaded yet")
	}
	return nil, nil
}

// feed answers the Envoy plugin (package feed): 503 until the revocation set has loaded, as
// a replica that has not read it would let revoked tokens through.
func (a *admin) feed(w http.ResponseWriter, r *http.Request) {
	set := a.list.Set
	if !set.Loaded() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "revocation set not loaded yet"})
		return
	}
	epoch, _ := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	seq, _ := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
	entries, epoch, seq, full := set.Changes(epoch, seq, feed.Token)
	f := feed.Feed{Epoch: strconv.FormatUint(epoch, 10), Seq: seq, Full: full, Revocations: entries,
		Keys: map[string]json.RawMessage{}}
	for _, iss := range a.srv.verifier.Issuers() {
		if ks := a.srv.verifier.IssuerKeys(iss).Keys(); ks != nil {
			b, err := a.encodeKeys(iss, ks)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "keys of " + iss + ": " + err.Error()})
				return
			}
			f.Keys[iss] = b
		}
	}
	writeJSON(w, http.StatusOK, f)
}

// encodeKeys is the JSON of an issuer's key set, encoded once per set.
func (a *admin) encodeKeys(iss string, ks jwk.Set) (json.RawMessage, error) {
	a.feedMu.Lock()
	defer a.feedMu.Unlock()
	if e, ok := a.feedKeys[iss]; ok && e.set == ks {
		return e.json, nil
	}
	b, err := json.Marshal(ks)
	if err != nil {
		return nil, err
	}
	if a.feedKeys == nil {
		a.feedKeys = map[string]encodedKeys{}
	}
	a.feedKeys[iss] = encodedKeys{ks, b}
	return b, nil
}

// revocationRequest is the body of POST /v1/revocations: exactly one of jti, sub or token.
type revocationRequest struct {
	JTI    string     `json:"jti,omitempty"`
	Sub    string     `json:"sub,omitempty"`
	Issuer string     `json:"issuer,omitempty"` // with sub; required when several issuers are trusted
	Before *time.Time `json:"before,omitempty"` // with sub; default now
	Token  string     `json:"token,omitempty"`
	// BySubject, with token: revoke every token of the token's subject at its issuer issued
	// until now, without having to know how the IdP spells the subject (a UUID at Keycloak).
	BySubject bool `json:"bySubject,omitempty"`
}

// authorized lets only the admin token's holder call h.
func (a *admin) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !adminhttp.Authorized(r, a.token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="specgate-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		h(w, r)
	}
}

func (a *admin) revoke(w http.ResponseWriter, r *http.Request) {
	var req revocationRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON: " + err.Error()})
		return
	}
	key, at, err := a.entryKey(req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	e, err := a.list.Revoke(r.Context(), key, at)
	if a.storeFailed(w, err, "revocation", "nothing was revoked", key) {
		return
	}
	a.srv.m.revocations.Inc()
	a.log.Info("revoked", "key", key, "at", e.At, "expires", e.Expires)
	writeJSON(w, http.StatusOK, e)
}

// storeFailed answers 503 when the store did not take an entry (what: a revocation, an API
// key), saying whether it may be in force (nothing: that it is not) and that a retry is
// harmless.
func (a *admin) storeFailed(w http.ResponseWriter, err error, what, nothing, key string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, revocation.ErrNotReplicated):
		a.log.Error(what+" not confirmed by a Redis replica", "key", key, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": what + " stored on the Redis primary " +
			"and in force, but no Redis replica confirmed it: a failover could lose it; retry (a retry is harmless)"})
	case errors.Is(err, revocation.ErrUncertain):
		a.log.Error("revocation store did not answer", "key", key, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the revocation store did not answer: " +
			"the " + what + " may or may not be stored; retry (a retry is harmless)"})
	default:
		a.log.Error(what+" not stored", "key", key, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "revocation store unavailable; " + nothing + ", retry"})
	}
	return true
}

// entryKey turns a request into the entry key and revocation time.
func (a *admin) entryKey(req revocationRequest) (string, time.Time, error) {
	now := a.list.Now()
	n := 0
	for _, s := range []string{req.JTI, req.Sub, req.Token} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return "", now, errors.New(`give exactly one of "jti", "sub" or "token"`)
	}
	if (req.Before != nil || req.Issuer != "") && req.Sub == "" {
		return "", now, errors.New(`"before" and "issuer" go with "sub"`)
	}
	if req.BySubject && req.Token == "" {
		return "", now, errors.New(`"bySubject" goes with "token"`)
	}
	switch {
	case req.JTI != "":
		return revocation.JTIKey(req.JTI), now, nil
	case req.Sub != "":
		at := now
		if req.Before != nil {
			at = *req.Before
		}
		v := a.srv.verifier
		if req.Issuer != "" && !v.Trusts(req.Issuer) {
			return "", now, fmt.Errorf("issuer %q is not one of gateway.yaml's issuers", req.Issuer)
		}
		if v.MultiIssuer() && req.Issuer == "" {
			return "", now, errors.New(`several issuers are trusted: "sub" needs "issuer" (two issuers' subjects with one name are two people)`)
		}
		return revocation.SubjectKey(v.Qualified(req.Issuer, req.Sub)), at, nil
	}
	// The caller is an authenticated admin naming a token to kill: reading it without
	// verification only extracts its jti; anything that does not parse is refused.
	raw := strings.TrimSpace(strings.TrimPrefix(req.Token, "Bearer "))
	tok, err := jwt.ParseInsecure([]byte(raw))
	if err != nil {
		return "", now, errors.New(`"token" is not a JWT`)
	}
	if req.BySubject {
		v := a.srv.verifier
		iss, _ := tok.Issuer()
		if !v.Trusts(iss) {
			return "", now, fmt.Errorf("the token's issuer %q is not one of gateway.yaml's issuers", iss)
		}
		sub, err := verify.StringClaim(tok, v.SubjectClaims())
		if err != nil || sub == "" {
			return "", now, fmt.Errorf("the token has no subject (claims.subject: %s)", v.SubjectClaims())
		}
		return revocation.SubjectKey(v.Qualified(iss, sub)), now, nil
	}
	if jti, ok := tok.JwtID(); ok && jti != "" {
		return revocation.JTIKey(jti), now, nil
	}
	return revocation.TokenKey(revocation.ContentHash(raw)), now, nil
}

var writeJSON = adminhttp.WriteJSON
