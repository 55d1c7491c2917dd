package xds_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/testutil"
)

// The HTTPS listener (listeners.tls) serves the public routes with the certificate its files
// hold, and a new pair from the next handshake on once the files change the way a Kubernetes
// Secret volume changes them: a new timestamped directory and one atomic swap of the ..data
// symlink the file names point through. Envoy is not restarted.
func TestHTTPSListenerReloadsItsCertificate(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if err := os.Mkdir(tlsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	first := secretVolume(t, tlsDir, 1)
	specs := filepath.Join(dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	backend := e2e.NewBackend(t, "a")
	e2e.WriteSpec(t, specs, "alpha.yaml", string(spec("alpha", backend)), nil)
	port := uint32(testutil.FreePort(t))
	g := newGateway(t, specs, func(c *config.Gateway) {
		c.Listeners.TLS = &config.ListenerTLS{Port: port, Certificate: filepath.Join(tlsDir, "tls.crt"), Key: filepath.Join(tlsDir, "tls.key")}
	})
	env := g.envoy("envoy-tls", false)
	g.eventually("/alpha/things", "a", 10*time.Second) // the plain listener is unchanged

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	served := func() (*big.Int, string) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{
			InsecureSkipVerify: true, // the test compares the served certificate itself
			NextProtos:         []string{"h2", "http/1.1"},
		})
		if err != nil {
			return nil, err.Error()
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return st.PeerCertificates[0].SerialNumber, st.NegotiatedProtocol
	}
	testutil.Eventually(t, 10*time.Second, "the HTTPS listener serves the first certificate", func() bool {
		serial, _ := served()
		return serial != nil && serial.Cmp(first.SerialNumber) == 0
	})
	if _, proto := served(); proto != "h2" {
		t.Errorf("ALPN chose %q, want h2", proto)
	}
	pool := x509.NewCertPool()
	pool.AddCert(first)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "gateway.test"}}}
	resp, err := client.Get("https://" + addr + "/alpha/things")
	if err != nil {
		t.Fatalf("HTTPS request: %v\n%s", err, env.Log())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTPS GET /alpha/things: %d %s", resp.StatusCode, body)
	}

	second := secretVolume(t, tlsDir, 2)
	d := testutil.Eventually(t, 10*time.Second, "the HTTPS listener serves the rotated certificate", func() bool {
		serial, _ := served()
		return serial != nil && serial.Cmp(second.SerialNumber) == 0
	})
	t.Logf("new certificate served %s after the swap", d)
}

// secretVolume writes a fresh certificate for gateway.test into dir the way the kubelet
// updates a Secret volume, and returns it: a new timestamped directory, then one atomic swap
// of the ..data symlink that tls.crt and tls.key point through.
func secretVolume(t *testing.T, dir string, n int) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	volume(t, dir, n, func(d string) { cert = testutil.ServerCert(t, d, "gateway.test", int64(1000+n)) })
	return cert
}

// volume is version n of a Secret volume in dir: write fills a new timestamped directory,
// then one atomic swap of the ..data symlink that tls.crt, tls.key and ca.crt point through.
func volume(t *testing.T, dir string, n int, write func(dir string)) {
	t.Helper()
	version := fmt.Sprintf("..2026_12_07_00_00_0%d", n)
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, version))
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
}

// An https backend that demands a client certificate, reached through a backend TLS profile:
// Envoy verifies the backend against the profile's CA and the spec's SAN and presents the
// profile's client certificate; a new client certificate, swapped in the way a Secret volume
// changes, is used from the next connection on while requests keep flowing (none fails), and
// Envoy is not restarted. (A pooled connection keeps the certificate it was made with.) A SAN the backend's certificate does not carry, or a profile without
// the client certificate, gets 503.
func TestBackendMutualTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	srvDir, clientDir := filepath.Join(dir, "server"), filepath.Join(dir, "client")
	for _, d := range []string{srvDir, clientDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca.Issue(t, srvDir, "orders.internal", 10, false)
	serverPair, err := tls.LoadX509KeyPair(filepath.Join(srvDir, "tls.crt"), filepath.Join(srvDir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	var first *x509.Certificate
	volume(t, clientDir, 1, func(d string) { first = ca.Issue(t, d, "gateway", 1001, true) })

	var mu sync.Mutex
	var serials []int64 // the client certificate of each request, in order
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		serials = append(serials, r.TLS.PeerCertificates[0].SerialNumber.Int64())
		mu.Unlock()
		// Each request on a new connection: a pooled connection keeps the certificate of
		// its handshake, and the test watches for the first handshake with the new one.
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, `{"backend": "orders"}`)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	backend.StartTLS()
	t.Cleanup(backend.Close)
	port := backend.URL[strings.LastIndex(backend.URL, ":")+1:]

	specs := filepath.Join(dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tlsKey := range map[string]string{
		"orders":   "{profile: internal, san: orders.internal}",
		"wrongsan": "{profile: internal, san: payments.internal}",
		"nocert":   "{profile: ca-only, san: orders.internal}",
	} {
		e2e.WriteSpec(t, specs, name+".yaml", fmt.Sprintf(`openapi: 3.1.0
info: {title: %[1]s, version: 1.0.0}
x-specgate: {service: %[1]s, backend: "https://127.0.0.1:%[2]s", basePath: /%[1]s, backendTLS: %[3]s}
security: []
paths:
  /things:
    get: {operationId: things, responses: {"200": {description: ok}}}
`, name, port, tlsKey), nil)
	}
	g := newGateway(t, specs, func(c *config.Gateway) {
		c.BackendTLS = map[string]config.BackendTLSProfile{
			"internal": {CA: filepath.Join(clientDir, "ca.crt"), Certificate: filepath.Join(clientDir, "tls.crt"), Key: filepath.Join(clientDir, "tls.key")},
			"ca-only":  {CA: filepath.Join(clientDir, "ca.crt")},
		}
	})
	g.envoy("envoy-mtls", false)
	g.eventually("/orders/things", "orders", 10*time.Second)
	get := func(path string) (int, string) {
		resp, err := http.Get(g.url(path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/wrongsan/things", "/nocert/things"} {
		if code, body := get(path); code != 503 {
			t.Errorf("GET %s: %d %s, want 503", path, code, body)
		}
	}

	// Requests every 10 ms while the client certificate is swapped.
	stop, failed, sent := make(chan struct{}), 0, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			sent++
			if code, _ := get("/orders/things"); code != 200 {
				failed++
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	var second *x509.Certificate
	volume(t, clientDir, 2, func(d string) { second = ca.Issue(t, d, "gateway", 1002, true) })
	d := testutil.Eventually(t, 10*time.Second, "the backend sees the new client certificate", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(serials) > 0 && serials[len(serials)-1] == second.SerialNumber.Int64()
	})
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	t.Logf("new client certificate used %s after the swap; %d requests during the swap, %d failed", d, sent, failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed while the client certificate changed", failed, sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if serials[0] != first.SerialNumber.Int64() {
		t.Errorf("the first request came with certificate %d, want %d", serials[0], first.SerialNumber.Int64())
	}
}
