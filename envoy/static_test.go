package envoy_test

import (
	"context"
	"encoding/json"
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

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/testenvoy"
	"github.com/specgate/specgate/policy"
)

// backend records what reached it and answers with its name.
type backend struct {
	name string
	mu   sync.Mutex
	last *http.Request
	srv  *httptest.Server
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend":%q,"path":%q}`, name, r.URL.Path)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) port() string { return strconv.Itoa(b.srv.Listener.Addr().(*net.TCPAddr).Port) }

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// allowAll is the smallest ext_authz peer: it allows everything, strips the headers the route
// does not allow (as specgate authz does) and records which route Envoy matched.
type allowAll struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	routes []string
}

func (a *allowAll) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
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

func (a *allowAll) lastRoute() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.routes) == 0 {
		return ""
	}
	return a.routes[len(a.routes)-1]
}

func (a *allowAll) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.routes)
}

// TestStaticBootstrapEndToEnd runs the real Envoy on a compiled static bootstrap and checks the
// routing contract of DESIGN.md §2 request by request.
func TestStaticBootstrapEndToEnd(t *testing.T) {
	alpha, beta := newBackend(t, "alpha"), newBackend(t, "beta")
	specs := t.TempDir()
	for _, f := range []string{"alpha.yaml", "beta.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "static", f))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("{{ALPHA_PORT}}", alpha.port(), "{{BETA_PORT}}", beta.port()).Replace(string(b))
		if err := os.WriteFile(filepath.Join(specs, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	authz := &allowAll{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, authz)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	pub, internal, admin := testenvoy.FreePort(t), testenvoy.FreePort(t), testenvoy.FreePort(t)
	cfg := config.Default()
	cfg.Listeners.Public, cfg.Listeners.Internal = uint32(pub), uint32(internal)
	gw, diags := compiler.Compile(specs)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(gw, translate.Options{Gateway: cfg, ListenAddress: "127.0.0.1", InlineRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(admin)
	boot, err := translate.Bootstrap(res, translate.BootstrapOptions{
		AdminAddress:  adminAddr,
		AuthzAddress:  lis.Addr().String(),
		RateLimitAddr: "127.0.0.1:" + strconv.Itoa(testenvoy.FreePort(t)), // nobody: limits fail open
	})
	if err != nil {
		t.Fatal(err)
	}
	y, err := translate.YAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(bootPath, y, 0o644); err != nil {
		t.Fatal(err)
	}
	testenvoy.Start(t, bootPath, adminAddr)

	pubURL := "http://127.0.0.1:" + strconv.Itoa(pub)
	intURL := "http://127.0.0.1:" + strconv.Itoa(internal)

	type want struct {
		status  int
		backend string // "" when Envoy answers itself
		path    string // path the backend saw
		route   string // route id the authz service saw
		allow   string
	}
	for _, tc := range []struct {
		name, base, method, path string
		want                     want
	}{
		{"concrete before template", pubURL, "GET", "/alpha/items/mine", want{200, "alpha", "/items/mine", "alpha.myItems", ""}},
		{"template", pubURL, "GET", "/alpha/items/42", want{200, "alpha", "/items/42", "alpha.getItem", ""}},
		{"basePath stripped", pubURL, "POST", "/alpha/items", want{200, "alpha", "/items", "alpha.createItem", ""}},
		{"basePath kept", pubURL, "GET", "/beta/things", want{200, "beta", "/beta/things", "beta.listThings", ""}},
		{"regex template", pubURL, "GET", "/alpha/files/report.pdf", want{200, "alpha", "/files/report.pdf", "alpha.getFile", ""}},
		{"regex template needs both parts", pubURL, "GET", "/alpha/files/report", want{status: 404}},
		{"undeclared method: 405 with Allow", pubURL, "PUT", "/alpha/items/42", want{status: 405, allow: "GET"}},
		{"internal op is undeclared on public", pubURL, "DELETE", "/alpha/items/42", want{status: 405, allow: "GET"}},
		{"internal op on internal listener", intURL, "DELETE", "/alpha/items/42", want{200, "alpha", "/items/42", "alpha.deleteItem", ""}},
		{"internal listener Allow lists internal ops", intURL, "PUT", "/alpha/items/42", want{status: 405, allow: "DELETE, GET"}},
		{"path with only internal ops: 404 on public", pubURL, "POST", "/beta/hidden", want{status: 404}},
		{"path with only internal ops on internal", intURL, "POST", "/beta/hidden", want{200, "beta", "/beta/hidden", "beta.hidden", ""}},
		{"unknown path", pubURL, "GET", "/nowhere", want{status: 404}},
		{"normalized path matches", pubURL, "GET", "/alpha/x/../items/mine", want{200, "alpha", "/items/mine", "alpha.myItems", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.base+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want.status && !(tc.want.status == 200 && resp.StatusCode < 300) {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.want.status, body)
			}
			if tc.want.backend == "" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content-type %q, want application/json", ct)
				}
				var v map[string]any
				if err := json.Unmarshal(body, &v); err != nil {
					t.Errorf("body is not JSON: %s", body)
				}
				if got := resp.Header.Get("Allow"); got != tc.want.allow {
					t.Errorf("Allow %q, want %q", got, tc.want.allow)
				}
				return
			}
			var got struct{ Backend, Path string }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if got.Backend != tc.want.backend || got.Path != tc.want.path {
				t.Errorf("reached %s %s, want %s %s", got.Backend, got.Path, tc.want.backend, tc.want.path)
			}
			if r := authz.lastRoute(); r != tc.want.route {
				t.Errorf("authz saw route %q, want %q", r, tc.want.route)
			}
		})
	}

	t.Run("only allowed headers reach the backend", func(t *testing.T) {
		req, _ := http.NewRequest("GET", pubURL+"/alpha/items/mine", nil)
		req.Header.Set("X-Tenant", "acme")
		req.Header.Set("X-Secret", "nope")
		req.Header.Set("X-User-Id", "forged")
		req.Header.Set("Accept-Language", "fr")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := alpha.lastRequest()
		if got.Header.Get("X-Tenant") != "acme" || got.Header.Get("Accept-Language") != "fr" {
			t.Errorf("allowed headers lost: %v", got.Header)
		}
		if got.Header.Get("X-Secret") != "" || got.Header.Get("X-User-Id") != "" {
			t.Errorf("headers outside the allow-list reached the backend: %v", got.Header)
		}
	})

	t.Run("CORS preflight answered before authz", func(t *testing.T) {
		before := authz.calls()
		req, _ := http.NewRequest("OPTIONS", pubURL+"/alpha/items", nil)
		req.Header.Set("Origin", "https://shop.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
		if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("Access-Control-Allow-Methods %q lacks POST", m)
		}
		if authz.calls() != before {
			t.Errorf("preflight reached the authz service")
		}
		req.Header.Set("Origin", "https://evil.example.com")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("foreign origin allowed: %v", resp.Header)
		}
		if r := alpha.lastRequest(); r != nil && r.Method == "OPTIONS" {
			t.Errorf("a refused preflight was forwarded to the backend")
		}
	})
}
