// Package adminhttp holds what the roles' admin HTTP servers share: bearer-token checks,
// JSON answers and server timeouts.
package adminhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/specgate/specgate/internal/buildinfo"
)

// Authorized reports whether r carries "Authorization: Bearer <token>". An empty token
// authorizes nobody. Digests are compared so neither the content nor the length of the token
// leaks by timing.
func Authorized(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// RequireToken answers 401 unless the request is Authorized.
func RequireToken(token string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Authorized(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="specgate-admin"`)
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin token required"})
			return
		}
		h(w, r)
	})
}

// WriteJSON answers v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is an http.Server with the timeouts every admin endpoint needs: slow or idle
// clients cannot hold connections forever.
func Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// Probes serves the probes every role answers the same way, as JSON: GET /healthz, 200 while
// the process serves, with the build's version and revision; GET /readyz, 200 {"status":"ready", ...more} once ready says so (nil
// error), else 503 {"status":"not ready","reason":...} (a pod is taken out of its Service).
func Probes(mux *http.ServeMux, ready func() (more map[string]string, err error)) {
	build := buildinfo.Get()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": build.Version, "revision": build.Revision})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		more, err := ready()
		if err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
		out := map[string]string{"status": "ready"}
		for k, v := range more {
			out[k] = v
		}
		WriteJSON(w, http.StatusOK, out)
	})
}
