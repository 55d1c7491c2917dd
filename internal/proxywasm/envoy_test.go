package proxywasm_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

const probeConfig = `
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %[1]d}}
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: %[2]d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: probe-route
                match: {prefix: /}
                route: {cluster: backend}
                metadata: {filter_metadata: {probe: {policy: "p1"}}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: probe
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: "configured"
                vm_config:
                  vm_id: probe
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: %[3]q}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[4]s}}}}]}]
  - name: feed
    connect_timeout: 1s
    load_assignment:
      cluster_name: feed
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[5]s}}}}]}]
`

// TestEnvoy runs the probe plugin in a real Envoy (v8, two workers) and checks each host call
// of the package by what the backend and the client see.
func TestEnvoy(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "probe.wasm")
	if err := testutil.BuildWasm("github.com/specgate/specgate/internal/proxywasm/testdata/probe", plugin); err != nil {
		t.Fatal(err)
	}
	seen := make(chan http.Header, 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer backend.Close()
	feed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "v7")
	}))
	defer feed.Close()
	port := func(s *httptest.Server) string { u, _ := url.Parse(s.URL); return u.Port() }

	admin := testutil.FreePort(t)
	listen := testutil.FreePort(t, admin)
	cfg := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, probeConfig, admin, listen, plugin, port(backend), port(feed)), 0o600); err != nil {
		t.Fatal(err)
	}
	testenvoy.Start(t, cfg, fmt.Sprintf("127.0.0.1:%d", admin))
	base := fmt.Sprintf("http://127.0.0.1:%d/", listen)

	get := func(hdr map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", base, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// The tick's HTTP call reaches the feed cluster and its answer the root context.
	var h http.Header
	testutil.Eventually(t, 10*time.Second, "the feed's answer in a request", func() bool {
		resp, _ := get(map[string]string{"X-Remove-Me": "1"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		h = <-seen
		return h.Get("X-Probe-Feed") == "200 v7"
	})
	for name, want := range map[string]string{
		"X-Probe-Route":  "probe-route",
		"X-Probe-Meta":   "p1",
		"X-Probe-Config": "configured",
		"X-Remove-Me":    "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("backend saw %s = %q, want %q", name, got, want)
		}
	}
	if n := h.Get("X-Probe-Headers"); n == "" || n == "0" {
		t.Errorf("header count %q", n)
	}

	// A local reply: its status, details, body and headers, and no backend hit.
	resp, body := get(map[string]string{"X-Probe": "deny"})
	if resp.StatusCode != 418 || body != "denied by probe\n" || resp.Header.Get("X-Probe-Reply") != "yes" {
		t.Errorf("local reply: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	select {
	case h := <-seen:
		t.Errorf("the backend saw a denied request: %v", h)
	default:
	}
}
