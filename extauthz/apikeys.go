package extauthz

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/extauthz/verify"
	"github.com/specgate/specgate/policy"
)

// API keys (OpenAPI apiKey schemes): a route's requirement may be met by a key that the
// admin API issued (POST /v1/keys). The store holds its SHA-256 only, with its grant: the
// client it identifies, its scopes and its quota plan. The key is taken from where the
// scheme says (a header, after an optional prefix such as Discord's "Bot "; a query
// parameter; a cookie) and removed from the request before the backend sees it.

const (
	reasonKeyInvalid = "invalid_key"
	reasonKeyMissing = "missing_key"
)

// keyCredential is the key a request carries for requirement k, and whether it carries one.
// A value that could say two things (a query parameter given twice) is carried but empty.
func keyCredential(k *policy.APIKey, headers map[string]string, path string) (string, bool) {
	switch k.In {
	case "header":
		v, ok := headers[strings.ToLower(k.Name)]
		if !ok {
			return "", false
		}
		if k.Prefix != "" {
			rest, ok := strings.CutPrefix(v, k.Prefix)
			if !ok {
				return "", false // another credential in the same header ("Bearer …")
			}
			v = rest
		}
		return v, true
	case "query":
		// By the raw name: Envoy removes the parameter by the name as sent, so a key under an
		// encoded spelling of the name (api%5Fkey) would reach the backend; it is refused.
		_, raw, _ := strings.Cut(path, "?")
		var found []string
		carried := false
		for _, pair := range strings.Split(raw, "&") {
			rawName, rawValue, _ := strings.Cut(pair, "=")
			name, err := url.QueryUnescape(rawName)
			if err != nil || name != k.Name {
				continue
			}
			carried = true
			v, err := url.QueryUnescape(rawValue)
			if err != nil || rawName != k.Name {
				return "", true
			}
			found = append(found, v)
		}
		if len(found) != 1 {
			return "", carried
		}
		return found[0], true
	case "cookie":
		c, ok := headers["cookie"]
		if !ok {
			return "", false
		}
		var found []string
		for _, ck := range (&http.Request{Header: http.Header{"Cookie": {c}}}).Cookies() {
			if ck.Name == k.Name {
				found = append(found, ck.Value)
			}
		}
		if len(found) == 0 {
			return "", false
		}
		if len(found) > 1 {
			return "", true
		}
		return found[0], true
	}
	return "", false
}

// checkAPIKey decides a request on a route with apiKey requirements when it carries a key
// for one of them (done). A key that is unknown, revoked or expired is refused whatever
// else the route accepts: the client meant it.
func (s *server) checkAPIKey(pol *routePolicy, headers map[string]string, path, addr string) (*authv3.CheckResponse, string, bool) {
	var (
		entry   revocation.Entry
		matched *policy.Requirement
	)
	for i := range pol.AnyOf {
		req := &pol.AnyOf[i]
		if req.APIKey == nil {
			continue
		}
		key, carried := keyCredential(req.APIKey, headers, path)
		if !carried {
			continue
		}
		if !s.revoked.Loaded() {
			return deniedUnavailable, reasonRevocationUnavailable, true
		}
		e, ok := s.revoked.APIKey(key)
		if key == "" || !ok || e.Revoked || !e.Expires.After(s.now()) {
			return deniedKey(req.APIKey, "the API key is unknown, revoked or expired"), reasonKeyInvalid, true
		}
		entry = e
		if (&verify.Identity{Scopes: e.Grant.Scopes}).HasScopes(req.Scopes) { // sorted when created
			matched = req
			break
		}
	}
	if entry.Grant == nil {
		return nil, "", false
	}
	if matched == nil {
		return pol.denied, reasonScope, true
	}
	id := &verify.Identity{Client: "key:" + entry.Grant.Client, Scopes: entry.Grant.Scopes, Plan: entry.Grant.Plan, Headers: s.keyHeaders(entry.Grant)}
	resp := s.allow(pol, headers, id, addr)
	ok := resp.GetOkResponse()
	// The key never reaches the backend, whatever the route forwards.
	switch k := matched.APIKey; k.In {
	case "header":
		if name := strings.ToLower(k.Name); !slices.Contains(ok.HeadersToRemove, name) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	case "query":
		ok.QueryParametersToRemove = append(ok.QueryParametersToRemove, k.Name)
	case "cookie":
		if pol.Allowed("cookie") { // the backend gets the other cookies, not the key
			// Envoy sets headers before it removes: remove only when nothing is left to set.
			if rest := cookiesBut(headers["cookie"], k.Name); rest != "" {
				ok.Headers = append(ok.Headers, overwrite("cookie", rest))
			} else {
				ok.HeadersToRemove = append(ok.HeadersToRemove, "cookie")
			}
		}
	}
	return resp, reasonOK, true
}

// keyHeaders are the identity headers of a key: the client id in those that carry a token's
// client, nothing in the others.
func (s *server) keyHeaders(g *revocation.Grant) []string {
	out := make([]string, len(s.verifier.ClaimHeaders()))
	for i, h := range s.verifier.ClaimHeaders() {
		if h.Client {
			out[i] = g.Client
		}
	}
	return out
}

// cookiesBut is a Cookie header without the cookies named name.
func cookiesBut(header, name string) string {
	var kept []string
	for _, ck := range (&http.Request{Header: http.Header{"Cookie": {header}}}).Cookies() {
		if ck.Name != name {
			kept = append(kept, ck.String())
		}
	}
	return strings.Join(kept, "; ")
}

// deniedKey is a 401 naming the scheme, so that a client with several credentials knows which
// one to fix.
func deniedKey(k *policy.APIKey, desc string) *authv3.CheckResponse {
	body, _ := json.Marshal(map[string]string{"error": reasonKeyInvalid, "error_description": desc, "scheme": k.Scheme})
	return deniedResponse(http.StatusUnauthorized, "", string(body))
}

// deniedMissingKey answers a route that only API keys open, for a request without one
// (routePolicy.missingKey: built once per policy).
func deniedMissingKey(pol policy.Route) *authv3.CheckResponse {
	var where []string
	for _, req := range pol.AnyOf {
		if k := req.APIKey; k != nil {
			where = append(where, k.Scheme+" ("+k.In+" "+k.Name+")")
		}
	}
	body, _ := json.Marshal(map[string]string{"error": reasonKeyMissing, "error_description": "an API key is required: " + strings.Join(where, " or ")})
	return deniedResponse(http.StatusUnauthorized, "", string(body))
}

// keyRequest is the body of POST /v1/keys.
type keyRequest struct {
	Client  string     `json:"client"`
	Scopes  []string   `json:"scopes,omitempty"`
	Plan    string     `json:"plan,omitempty"`
	Expires *time.Time `json:"expires,omitempty"` // default: DefaultKeyLifetime from now
}

// KeyInfo describes a stored key in the admin API (never the key, but in the answer that
// creates it: its id is the start of its hash).
type KeyInfo struct {
	ID      string    `json:"id"`
	Client  string    `json:"client"`
	Scopes  []string  `json:"scopes,omitempty"`
	Plan    string    `json:"plan,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Revoked bool      `json:"revoked,omitempty"`
	Key     string    `json:"key,omitempty"` // only in the answer that creates it
}

// DefaultKeyLifetime and MaxKeyLifetime bound API keys: every key expires, so a forgotten
// one stops working and its entry leaves the store.
const (
	DefaultKeyLifetime = 90 * 24 * time.Hour
	MaxKeyLifetime     = 400 * 24 * time.Hour
)

func keyInfoOf(e revocation.Entry) KeyInfo {
	return KeyInfo{ID: keyID(e), Client: e.Grant.Client, Scopes: e.Grant.Scopes, Plan: e.Grant.Plan,
		Created: e.At, Expires: e.Expires, Revoked: e.Revoked}
}

// keyID names a key in the admin API: the first 16 hex digits of its hash.
func keyID(e revocation.Entry) string {
	h := strings.TrimPrefix(e.Key, revocation.PrefixAPIKey)
	return h[:min(16, len(h))]
}

var (
	keyClientRE = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)
	keyPlanRE   = regexp.MustCompile(`^[a-z0-9-]{0,63}$`)
)

func (a *admin) createKey(w http.ResponseWriter, r *http.Request) {
	var req keyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON: " + err.Error()})
		return
	}
	now := a.list.Now()
	expires := now.Add(DefaultKeyLifetime)
	if req.Expires != nil {
		expires = *req.Expires
	}
	var problem string
	switch {
	case !keyClientRE.MatchString(req.Client):
		problem = `"client" must be 1-128 of [A-Za-z0-9._:@-]`
	case !keyPlanRE.MatchString(req.Plan):
		problem = `"plan" must be up to 63 of [a-z0-9-]`
	case !expires.After(now) || expires.Sub(now) > MaxKeyLifetime:
		problem = fmt.Sprintf(`"expires" must be in the future, within %d days`, MaxKeyLifetime/(24*time.Hour))
	}
	for _, sc := range req.Scopes {
		if !policy.ValidScope(sc) {
			problem = fmt.Sprintf("scope %q must be a non-empty word", sc)
		}
	}
	if problem != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": problem})
		return
	}
	scopes := slices.Compact(slices.Sorted(slices.Values(req.Scopes)))
	key, e, err := a.list.NewAPIKey(r.Context(), revocation.Grant{Client: req.Client, Scopes: scopes, Plan: req.Plan}, expires)
	if a.storeFailed(w, err, "API key", "no key was created", e.Key) {
		return
	}
	info := keyInfoOf(e)
	info.Key = key
	a.log.Info("API key created", "id", info.ID, "client", info.Client, "plan", info.Plan, "expires", info.Expires)
	writeJSON(w, http.StatusCreated, info)
}

func (a *admin) listKeys(w http.ResponseWriter, _ *http.Request) {
	entries := a.list.Set.APIKeys()
	infos := make([]KeyInfo, 0, len(entries))
	for _, e := range entries {
		infos = append(infos, keyInfoOf(e))
	}
	slices.SortFunc(infos, func(x, y KeyInfo) int { return x.Created.Compare(y.Created) })
	writeJSON(w, http.StatusOK, map[string]any{"keys": infos})
}

func (a *admin) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	keys := a.list.Set.APIKeys()
	i := slices.IndexFunc(keys, func(e revocation.Entry) bool { return keyID(e) == id })
	if i < 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no API key with id " + id})
		return
	}
	e, err := a.list.RevokeAPIKey(r.Context(), keys[i])
	if a.storeFailed(w, err, "API key revocation", "nothing was revoked", e.Key) {
		return
	}
	a.log.Info("API key revoked", "id", id, "client", e.Grant.Client)
	writeJSON(w, http.StatusOK, keyInfoOf(e))
}
