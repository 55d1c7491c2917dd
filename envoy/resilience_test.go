package envoy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/stack"
)

const retriesSpec = `openapi: 3.1.0
info: {title: Stock, version: 1.0.0}
x-specgate: {service: stock, backend: "http://127.0.0.1:{{PORT}}", basePath: /stock, retries: {attempts: 2, perTryTimeout: 2s}}
security: []
paths:
  /fail/{key}:
    get: {operationId: getFail, parameters: [{name: key, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
    post: {operationId: postFail, parameters: [{name: key, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
  /once/{key}:
    post: {operationId: postOnce, x-specgate: {retries: {attempts: 1, on: [5xx], nonIdempotent: true}}, parameters: [{name: key, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
  /plain/{key}:
    get: {operationId: getPlain, x-specgate: {retries: false}, parameters: [{name: key, in: path, required: true, schema: {type: string}}], responses: {"200": {description: ok}}}
`

// x-specgate retries through real Envoy, against a backend whose first answer to each path
// is a failure (a 503, or a connection reset after reading the request): an idempotent GET is
// retried and succeeds; a POST is not retried where the backend saw it, unless its operation
// says nonIdempotent; retries: false turns them off. The backend counts what it saw.
func TestRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		key := r.Method + " " + r.URL.Path
		mu.Lock()
		seen[key]++
		n := seen[key]
		mu.Unlock()
		if n > 1 {
			fmt.Fprintln(w, "ok")
			return
		}
		if strings.HasSuffix(r.URL.Path, "/reset") {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close() // the pod died with the request in hand
			}
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(backend.Close)
	port := backend.URL[strings.LastIndex(backend.URL, ":")+1:]
	s := stack.Start(t, stack.Options{Specs: map[string]string{"stock.yaml": retriesSpec}, Vars: map[string]string{"PORT": port}})
	for _, tc := range []struct {
		name, method, path string
		want, tries        int
	}{
		{"GET after a 503", "GET", "/fail/503", 200, 2},
		{"GET after a reset", "GET", "/fail/reset", 200, 2},
		{"POST after a 503", "POST", "/fail/503", 503, 1},
		{"POST after a reset", "POST", "/fail/reset", 503, 1},
		{"POST of a nonIdempotent operation after a 503", "POST", "/once/503", 200, 2},
		{"GET with retries: false", "GET", "/plain/503", 503, 1},
	} {
		req, _ := http.NewRequest(tc.method, s.Public+"/stock"+tc.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mu.Lock()
		tries := seen[tc.method+" /stock"+tc.path]
		mu.Unlock()
		if resp.StatusCode != tc.want || tries != tc.tries {
			t.Errorf("%s: %d after %d tries at the backend, want %d after %d", tc.name, resp.StatusCode, tries, tc.want, tc.tries)
		}
	}
}

const breakerSpec = `openapi: 3.1.0
info: {title: Slow, version: 1.0.0}
x-specgate: {service: slow, backend: "http://127.0.0.1:{{PORT}}", basePath: /slow, circuitBreaker: {maxRequests: 1}}
security: []
paths:
  /work:
    get: {operationId: work, responses: {"200": {description: ok}}}
`

// x-specgate circuitBreaker through real Envoy: with one request in flight allowed (a bound on
// all Envoy's workers together), of four concurrent requests to a slow backend three fail at
// once with the gateway's 503 backend_unavailable, and the backend never sees two at a time.
func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight, most := 0, 0
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	t.Cleanup(backend.Close)
	port := backend.URL[strings.LastIndex(backend.URL, ":")+1:]
	s := stack.Start(t, stack.Options{Specs: map[string]string{"slow.yaml": breakerSpec}, Vars: map[string]string{"PORT": port}})
	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, 4)
	for range 4 {
		go func() {
			resp, err := http.Get(s.Public + "/slow/work")
			if err != nil {
				answers <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	// The overflow answers while the first waits at the backend.
	var refused []answer
	for len(refused) < 3 {
		select {
		case a := <-answers:
			refused = append(refused, a)
		case <-time.After(3 * time.Second):
			t.Fatalf("only %d of 4 concurrent requests answered at once: %v", len(refused), refused)
		}
	}
	close(release)
	for _, a := range refused {
		if a.code != 503 || !strings.Contains(a.body, `"backend_unavailable"`) {
			t.Errorf("overflow: %d %s, want 503 backend_unavailable", a.code, a.body)
		}
	}
	if a := <-answers; a.code != 200 {
		t.Errorf("admitted request: %d %s", a.code, a.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 1 {
		t.Errorf("the backend had %d requests at once, want 1", most)
	}
}
