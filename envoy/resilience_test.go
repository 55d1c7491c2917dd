package envoy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
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

const podsSpec = `openapi: 3.1.0
info: {title: Stock, version: 1.0.0}
x-specgate:
  service: stock
  backend: "http://pods.test:{{PORT}}"
  basePath: /stock
  retries: {attempts: 2}
  outlierDetection: {consecutive5xx: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
security: []
paths:
  /items:
    get: {operationId: list, responses: {"200": {description: ok}}}
    post: {operationId: add, responses: {"201": {description: ok}}}
`

// The chaos scenario of a backend of two pods (a headless Service's name, here a test DNS
// server's), through real Envoy: one pod answers 503 for a while and then dies. Clients of the
// idempotent GET see no error (retried on the other pod, then the failing one ejected); a
// POST that the failing pod answered with 503 is not retried (the other pod never sees it);
// once the pod is gone, every request succeeds on the other one.
func TestTwoBackendPods(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	type pod struct {
		srv  *http.Server
		mu   sync.Mutex
		seen map[string]int
	}
	start := func(ip string, fail bool) *pod {
		p := &pod{seen: map[string]int{}}
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			t.Fatal(err)
		}
		p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			p.mu.Lock()
			p.seen[r.Method+" "+r.URL.Query().Get("id")]++ // Envoy sets its own X-Request-Id
			p.mu.Unlock()
			if fail {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})}
		go func() { _ = p.srv.Serve(l) }()
		t.Cleanup(func() { p.srv.Close() })
		return p
	}
	healthy, failing := start("127.0.0.2", false), start("127.0.0.3", true)
	dns := e2e.StartDNS(t, map[string][]string{"pods.test": {"127.0.0.2", "127.0.0.3"}})
	s := stack.Start(t, stack.Options{Specs: map[string]string{"stock.yaml": podsSpec}, Vars: map[string]string{"PORT": strconv.Itoa(port)},
		Configure: func(c *config.Gateway) { c.Backends.Allow = append(c.Backends.Allow, "pods.test") },
		Bootstrap: useDNS(dns)})
	send := func(method string, i int) int {
		req, _ := http.NewRequest(method, fmt.Sprintf("%s/stock/items?id=%s-%d", s.Public, method, i), strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	seenAt := func(p *pod, id string) int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.seen[id]
	}
	// POSTs until one lands on the failing pod (the round robin takes it within two): its 503
	// reaches the client, and the other pod never sees that request.
	refused := false
	testutil.Eventually(t, 10*time.Second, "a POST answered by the failing pod", func() bool {
		i := int(time.Now().UnixNano())
		code := send("POST", i)
		id := fmt.Sprintf("POST POST-%d", i)
		if seenAt(failing, id) == 0 {
			return false
		}
		refused = code == 503 && seenAt(failing, id) == 1 && seenAt(healthy, id) == 0
		return true
	})
	if !refused {
		t.Error("a POST the failing pod answered 503 was retried, or not answered 503")
	}
	// GETs while it keeps failing: retried on the other pod, and it is ejected.
	getFailed := 0
	for i := range 20 {
		if code := send("GET", i); code != 200 {
			getFailed++
		}
	}
	failing.srv.Close() // the pod dies
	for i := 20; i < 40; i++ {
		if code := send("GET", i); code != 200 {
			getFailed++
		}
		if code := send("POST", i); code != 200 {
			t.Errorf("POST %d after the failing pod died: %d", i, code)
		}
	}
	failing.mu.Lock()
	gets := 0
	for id, n := range failing.seen {
		if strings.HasPrefix(id, "GET ") {
			gets += n
		}
	}
	failing.mu.Unlock()
	t.Logf("figure: 40 GETs while one of two pods failed and died: %d failed; the failing pod saw %d of them before its ejection", getFailed, gets)
	if getFailed > 0 {
		t.Errorf("%d GETs failed, want 0", getFailed)
	}
	// Outlier detection ejected it after its second 5xx in a row: round robin alone would
	// have sent it every other GET.
	if gets > 3 {
		t.Errorf("the failing pod saw %d of the first 20 GETs: not ejected", gets)
	}
}

// A service that declares no retries still loses no request to a pod that refuses
// connections (a pod going away, a network policy resyncing): every route retries once, on
// another pod, where no backend saw the request. POSTs included: nothing was sent.
func TestConnectFailuresRetriedByDefault(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.4:%d", port)) // 127.0.0.5 listens on nothing
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	dns := e2e.StartDNS(t, map[string][]string{"pods.test": {"127.0.0.4", "127.0.0.5"}})
	spec := strings.Replace(podsSpec, "  retries: {attempts: 2}\n", "", 1)
	s := stack.Start(t, stack.Options{Specs: map[string]string{"stock.yaml": spec}, Vars: map[string]string{"PORT": strconv.Itoa(port)},
		Configure: func(c *config.Gateway) { c.Backends.Allow = append(c.Backends.Allow, "pods.test") },
		Bootstrap: useDNS(dns)})
	failed := 0
	for i := range 20 {
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, s.Public+"/stock/items", strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed++
				t.Logf("%s %d: %d", method, i, resp.StatusCode)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 40 requests failed while one of two pods refused connections, want 0", failed)
	}
}

// useDNS points Envoy's resolver at the test DNS server at addr.
func useDNS(addr string) func(*bootstrapv3.Bootstrap) {
	return func(b *bootstrapv3.Bootstrap) {
		host, p, _ := net.SplitHostPort(addr)
		pn, _ := strconv.Atoi(p)
		cares, _ := anypb.New(&caresv3.CaresDnsResolverConfig{Resolvers: []*corev3.Address{{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pn)}}}}}})
		b.TypedDnsResolverConfig = &corev3.TypedExtensionConfig{Name: "envoy.network.dns_resolver.cares", TypedConfig: cares}
	}
}
