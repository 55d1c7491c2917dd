// Package e2e holds the small peers that end-to-end tests put around a real Envoy: backends
// that record what reached them, and an allow-all ext_authz server for tests that are not
// about authorization.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/specgate/specgate/policy"
)

// Backend records the last request that reached it and answers
// {"backend": name, "path": p, "bodyBytes": n}, n the length of the body it read.
type Backend struct {
	Name string
	srv  *httptest.Server
	mu   sync.Mutex
	last *http.Request
	hits int
}

// NewBackend starts a backend on 127.0.0.1 until the test ends.
func NewBackend(t testing.TB, name string) *Backend {
	b := &Backend{Name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.hits++
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend":%q,"path":%q,"bodyBytes":%d}`, name, r.URL.Path, n)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// Port is the backend's loopback port.
func (b *Backend) Port() string { return strconv.Itoa(b.srv.Listener.Addr().(*net.TCPAddr).Port) }

// Last is the last request that reached the backend (nil if none).
func (b *Backend) Last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Hits counts the requests that reached the backend.
func (b *Backend) Hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// AllowAll is the smallest ext_authz peer: it allows every request, strips the headers the
// route does not allow (as specgate authz does) and records the route ids Envoy matched.
type AllowAll struct {
	authv3.UnimplementedAuthorizationServer
	Addr   string
	mu     sync.Mutex
	routes []string
}

// StartAllowAll serves AllowAll on 127.0.0.1 until the test ends.
func StartAllowAll(t testing.TB) *AllowAll {
	a := &AllowAll{}
	a.Addr = serveGRPC(t, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, a) })
	return a
}

// serveGRPC serves what register puts on a gRPC server on 127.0.0.1 until the test ends, and
// returns its address.
func serveGRPC(t testing.TB, register func(*grpc.Server)) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func (a *AllowAll) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ext := req.GetAttributes().GetContextExtensions()
	pol, err := policy.Decode(ext[policy.ExtPolicy])
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.routes = append(a.routes, ext[policy.ExtRoute])
	a.mu.Unlock()
	var remove []string
	for name := range req.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		if !strings.HasPrefix(name, ":") && !pol.Allowed(name) {
			remove = append(remove, name)
		}
	}
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{HeadersToRemove: remove}},
	}, nil
}

// LastRoute is the route id of the last check.
func (a *AllowAll) LastRoute() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.routes) == 0 {
		return ""
	}
	return a.routes[len(a.routes)-1]
}

// Calls counts the checks.
func (a *AllowAll) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.routes)
}

// WriteSpec writes a spec template into dir, replacing each {{KEY}} by vars[KEY].
func WriteSpec(t testing.TB, dir, name, tmpl string, vars map[string]string) string {
	t.Helper()
	for k, v := range vars {
		tmpl = strings.ReplaceAll(tmpl, "{{"+k+"}}", v)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
