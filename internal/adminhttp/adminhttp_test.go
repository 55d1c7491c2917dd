package adminhttp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every role's probes answer JSON: /healthz always 200, /readyz 503 with the reason until
// ready, then 200 with what the role adds.
func TestProbes(t *testing.T) {
	ready := false
	mux := http.NewServeMux()
	Probes(mux, func() (map[string]string, error) {
		if !ready {
			return nil, errors.New("no config yet")
		}
		return map[string]string{"version": "v1"}, nil
	})
	get := func(path string) (int, map[string]string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: not JSON: %q (%v)", path, rec.Body.String(), err)
		}
		return rec.Code, body
	}
	if code, body := get("/healthz"); code != 200 || body["status"] != "ok" {
		t.Errorf("/healthz: %d %v", code, body)
	}
	if code, body := get("/readyz"); code != 503 || body["status"] != "not ready" || body["reason"] != "no config yet" {
		t.Errorf("/readyz before: %d %v", code, body)
	}
	ready = true
	if code, body := get("/readyz"); code != 200 || body["status"] != "ready" || body["version"] != "v1" {
		t.Errorf("/readyz after: %d %v", code, body)
	}
}
