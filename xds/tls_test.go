package xds_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	version := fmt.Sprintf("..2026_12_07_00_00_0%d", n)
	if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	cert := testutil.ServerCert(t, filepath.Join(dir, version), "gateway.test", int64(1000+n))
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	return cert
}
