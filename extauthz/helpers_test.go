package extauthz

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lestrrat-go/jwx/v3/jwk"
	dto "github.com/prometheus/client_model/go"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/policy"
)

const (
	testIss = "https://issuer.test/"
	testAud = "api"
)

// testIdP serves a JWKS that a test can take down and bring back.
type testIdP struct {
	key     *devissuer.Key
	srv     *httptest.Server
	down    atomic.Bool
	fetches atomic.Int64
	jwks    atomic.Pointer[http.Handler]

	mu  sync.Mutex
	log []time.Time // when each fetch arrived
}

func newIdP(t testing.TB, keys ...*devissuer.Key) *testIdP {
	t.Helper()
	if len(keys) == 0 {
		keys = []*devissuer.Key{rsaKey(t)}
	}
	p := &testIdP{key: keys[0]}
	p.setKeys(keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		p.log = append(p.log, time.Now())
		p.mu.Unlock()
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		(*p.jwks.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testIdP) setKeys(keys ...*devissuer.Key) {
	h := devissuer.JWKS(keys...)
	p.jwks.Store(&h)
}

// fetchedSince is when each fetch since from arrived.
func (p *testIdP) fetchedSince(from time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, at := range p.log {
		if !at.Before(from) {
			out = append(out, at)
		}
	}
	return out
}

func (p *testIdP) url() string { return p.srv.URL + "/jwks.json" }

var sharedRSA atomic.Pointer[devissuer.Key]

// rsaKey is one RSA key per test binary: generating 2048-bit keys is slow under -race.
func rsaKey(t testing.TB) *devissuer.Key {
	if k := sharedRSA.Load(); k != nil {
		return k
	}
	k, err := devissuer.Generate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	sharedRSA.CompareAndSwap(nil, k)
	return sharedRSA.Load()
}

func testConfig(p *testIdP) config.Gateway {
	cfg := config.Default()
	cfg.Issuers = []config.Issuer{{Issuer: testIss, JWKSURI: p.url(), Audiences: []string{testAud}}}
	cfg.Revocation.ExpectedEntries = 10_000
	cfg.Revocation.Store = "memory" // tests that need a durable store set their own
	return cfg
}

// startServer runs the service's gRPC API on a free loopback port and returns a client.
func startServer(t testing.TB, d deps) (*server, authv3.AuthorizationClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := newServer(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go func() { _ = gs.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		s.close()
		cancel()
	})
	return s, authv3.NewAuthorizationClient(conn)
}

func mint(t testing.TB, k *devissuer.Key, sub string, scopes []string, extra map[string]any) string {
	t.Helper()
	tok, err := devissuer.Mint(k, testIss, testAud, sub, scopes, time.Hour, extra)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var protectedRoute = policy.Route{ID: "orders.getOrder", AnyOf: []policy.Requirement{{Scopes: []string{"orders:read"}}}}

// request builds a Check request for a route with the given headers (lower-case names).
func request(t testing.TB, route policy.Route, headers map[string]string) *authv3.CheckRequest {
	t.Helper()
	ext, err := route.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{":method": "GET", ":path": "/orders/1", ":authority": "api.test", "host": "api.test"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1", Headers: h}},
		ContextExtensions: ext,
	}}
}

func bearerReq(t testing.TB, route policy.Route, tok string) *authv3.CheckRequest {
	return request(t, route, map[string]string{"authorization": "Bearer " + tok})
}

// httpStatus is the status Envoy would answer: 200 for OK, else the denied status.
func httpStatus(r *authv3.CheckResponse) int {
	if r.GetStatus().GetCode() == 0 {
		return 200
	}
	return int(r.GetDeniedResponse().GetStatus().GetCode())
}

func deniedHeader(r *authv3.CheckResponse, name string) string {
	for _, h := range r.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func check(t testing.TB, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error (must always answer): %v", err)
	}
	return resp
}

// newSet is an empty, loaded revocation set (as after a first sync with an empty store).
func newSet() *revocation.Set {
	s := revocation.NewSet(10_000, 1e-7)
	s.Replace(nil, time.Now())
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// exportPublic writes the raw public key of k into dst.
func exportPublic(k *devissuer.Key, dst *any) error { return jwk.Export(k.Public(), dst) }

// reasons returns the checks counter as "decision/reason" -> count.
func reasons(t testing.TB, s *server) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range gather(t, s, "specgate_authz_checks_total") {
		out[lbl(m, "decision")+"/"+lbl(m, "reason")] += m.GetCounter().GetValue()
	}
	return out
}

// gather returns the samples of one of the server's metrics.
func gather(t testing.TB, s *server, name string) []*dto.Metric {
	t.Helper()
	mfs, err := s.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func lbl(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func headerMap(h map[string]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for k, v := range h {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	return m
}
