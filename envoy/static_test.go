package envoy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// bodyLimit is listeners.maxRequestBodyBytes in TestStaticBootstrapEndToEnd: small, so the
// test sends little.
const bodyLimit = 64 << 10

// staticGateway is a real Envoy on a static bootstrap compiled from a spec directory.
type staticGateway struct {
	envoy                *testenvoy.Envoy
	admin, pub, internal string // admin address; listener URLs
	ops                  int    // operations compiled
}

// startStatic compiles specs (refusing on any error), writes the static bootstrap with
// listeners on free loopback ports and starts Envoy until the test ends. Rate limits fail
// open: no ratelimit service listens.
func startStatic(t *testing.T, specs, authzAddr string, configure func(*config.Gateway), bootOpts ...func(*translate.BootstrapOptions)) staticGateway {
	t.Helper()
	pub, internal, admin := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	cfg := config.Default()
	cfg.Listeners.Public, cfg.Listeners.Internal = uint32(pub), uint32(internal)
	if configure != nil {
		configure(&cfg)
	}
	gw, diags := compiler.Compile(specs, compiler.Options{Gateway: &cfg})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(gw, translate.Options{ListenAddress: "127.0.0.1", InlineRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(admin)
	bo := translate.BootstrapOptions{
		AdminAddress:  adminAddr,
		AuthzAddress:  authzAddr,
		RateLimitAddr: testutil.FreeAddr(t), // nobody: limits fail open
	}
	for _, f := range bootOpts {
		f(&bo)
	}
	boot, err := translate.Bootstrap(res, bo)
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
	if strings.HasPrefix(bo.AdminAddress, "unix:") {
		adminAddr = bo.StatsAddress // the admin is on a socket: wait for /ready through the stats listener
	}
	ops := 0
	for _, svc := range gw.Services {
		ops += len(svc.Operations)
	}
	return staticGateway{
		ops:   ops,
		envoy: testenvoy.Start(t, bootPath, adminAddr),
		admin: adminAddr,
		pub:   "http://127.0.0.1:" + strconv.Itoa(pub), internal: "http://127.0.0.1:" + strconv.Itoa(internal),
	}
}

// TestStaticBootstrapEndToEnd runs the real Envoy on a compiled static bootstrap and checks the
// routing contract of docs/vocabulary.md (Matching) request by request.
func TestStaticBootstrapEndToEnd(t *testing.T) {
	alpha, beta := e2e.NewBackend(t, "alpha"), e2e.NewBackend(t, "beta")
	specs := t.TempDir()
	for _, f := range []string{"alpha.yaml", "beta.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "static", f))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("{{ALPHA_PORT}}", alpha.Port(), "{{BETA_PORT}}", beta.Port()).Replace(string(b))
		if err := os.WriteFile(filepath.Join(specs, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	authz := e2e.StartAllowAll(t)
	sg := startStatic(t, specs, authz.Addr, func(cfg *config.Gateway) { cfg.Listeners.MaxRequestBodyBytes = bodyLimit })
	envoy, adminAddr, pubURL, intURL := sg.envoy, sg.admin, sg.pub, sg.internal

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
		{"regex template needs both parts", pubURL, "GET", "/alpha/files/report", want{status: 405, allow: "DELETE"}},
		{"lone variable after text with variables", pubURL, "DELETE", "/alpha/files/42", want{200, "alpha", "/files/42", "alpha.deleteFile", ""}},
		{"undeclared method: 405 with Allow", pubURL, "PUT", "/alpha/items/42", want{status: 405, allow: "GET"}},
		{"internal op is undeclared on public", pubURL, "DELETE", "/alpha/items/42", want{status: 405, allow: "GET"}},
		{"internal op on internal listener", intURL, "DELETE", "/alpha/items/42", want{200, "alpha", "/items/42", "alpha.deleteItem", ""}},
		{"internal listener Allow lists internal ops", intURL, "PUT", "/alpha/items/42", want{status: 405, allow: "DELETE, GET"}},
		{"path with only internal ops: 404 on public", pubURL, "POST", "/beta/hidden", want{status: 404}},
		{"internal path not shadowed by a public template", pubURL, "GET", "/alpha/items/admin", want{status: 404}},
		{"internal path on internal listener", intURL, "GET", "/alpha/items/admin", want{200, "alpha", "/items/admin", "alpha.itemsAdmin", ""}},
		{"path with only internal ops on internal", intURL, "POST", "/beta/hidden", want{200, "beta", "/beta/hidden", "beta.hidden", ""}},
		{"unknown path", pubURL, "GET", "/nowhere", want{status: 404}},
		{"normalized path matches", pubURL, "GET", "/alpha/x/../items/mine", want{200, "alpha", "/items/mine", "alpha.myItems", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.base+tc.path, nil)
			// With a token (any: this authz allows all), anonymous operations too go to authz,
			// which is what this test watches: the route id it receives.
			req.Header.Set("Authorization", "Bearer any")
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
			if r := authz.LastRoute(); r != tc.want.route {
				t.Errorf("authz saw route %q, want %q", r, tc.want.route)
			}
		})
	}

	t.Run("Envoy's per-route stats carry the route id", func(t *testing.T) {
		// GET /alpha/items/42 reached alpha.getItem above; dots become _ in stat names.
		n, err := envoy.Stat("vhost.gateway.route.alpha_getItem.upstream_rq_completed")
		if err != nil || n == "" || n == "0" {
			t.Fatalf("vhost.gateway.route.alpha_getItem.upstream_rq_completed = %q (%v)", n, err)
		}
		resp, err := http.Get("http://" + adminAddr + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		prom, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `envoy_route="alpha_getItem"`; !strings.Contains(string(prom), want) {
			t.Errorf("Prometheus stats lack %s", want)
		}
	})

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
		got := alpha.Last()
		if got.Header.Get("X-Tenant") != "acme" || got.Header.Get("Accept-Language") != "fr" {
			t.Errorf("allowed headers lost: %v", got.Header)
		}
		if got.Header.Get("X-Secret") != "" || got.Header.Get("X-User-Id") != "" {
			t.Errorf("headers outside the allow-list reached the backend: %v", got.Header)
		}
	})

	t.Run("request bodies: whole up to the limit, 413 beyond it", func(t *testing.T) {
		const uploadLimit = 262144 // alpha.upload's own x-specgate maxRequestBodyBytes
		for _, tc := range []struct {
			name    string
			path    string
			size    int
			chunked bool // no Content-Length: Envoy learns the size only as the body arrives
			status  int
		}{
			{"at the limit", "/alpha/items", bodyLimit, false, 200},
			{"one byte over", "/alpha/items", bodyLimit + 1, false, 413},
			{"chunked within", "/alpha/items", 1000, true, 200},
			{"chunked over", "/alpha/items", 4 * bodyLimit, true, 413},
			{"an operation's own limit", "/alpha/uploads", uploadLimit, true, 200},
			{"over an operation's own limit", "/alpha/uploads", uploadLimit + 1, false, 413},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hits := alpha.Hits()
				var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), tc.size))
				if tc.chunked {
					body = io.MultiReader(body) // hides the length from net/http
				}
				req, _ := http.NewRequest("POST", pubURL+tc.path, body)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, got)
				}
				if tc.status != 200 {
					var v struct{ Status int }
					if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(got, &v) != nil || v.Status != 413 {
						t.Errorf("413 answer is not the gateway's JSON: %s %s", ct, got)
					}
					if alpha.Hits() != hits {
						t.Errorf("a body over the limit reached the backend")
					}
					return
				}
				var seen struct{ BodyBytes int }
				if err := json.Unmarshal(got, &seen); err != nil || seen.BodyBytes != tc.size {
					t.Errorf("backend read %d bytes, want %d (%s)", seen.BodyBytes, tc.size, got)
				}
			})
		}
	})

	t.Run("edge hardening refuses before any backend", func(t *testing.T) {
		for _, tc := range []struct {
			name, path string
			hdr        map[string]string
			status     int
		}{
			{"header name with an underscore", "/alpha/items/mine", map[string]string{"X_User_Id": "forged"}, 400},
			{"escaped slash in the path", "/alpha/items%2F42", nil, 400},
			{"headers over 60 KiB", "/alpha/items/mine", map[string]string{"X-Big": strings.Repeat("b", 61<<10)}, 431},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hits := alpha.Hits()
				req, _ := http.NewRequest("GET", pubURL+tc.path, nil)
				for k, v := range tc.hdr {
					req.Header[k] = []string{v}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status || alpha.Hits() != hits {
					t.Errorf("status %d, want %d; backend hits %d → %d", resp.StatusCode, tc.status, hits, alpha.Hits())
				}
			})
		}
	})

	t.Run("CORS preflight answered before authz", func(t *testing.T) {
		before := authz.Calls()
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
		if authz.Calls() != before {
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
		if r := alpha.Last(); r != nil && r.Method == "OPTIONS" {
			t.Errorf("a refused preflight was forwarded to the backend")
		}
		// Without Origin it is no browser preflight: the CORS filter passes it on, and it must
		// meet authorization like any request, never reach the backend unchecked.
		req.Header.Del("Origin")
		req.Header.Set("X-User-Id", "forged")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("OPTIONS without Origin answered %d", resp.StatusCode)
		}
		if r := alpha.Last(); r != nil && r.Method == "OPTIONS" {
			t.Errorf("an OPTIONS request without Origin reached the backend unchecked")
		}
	})
}
