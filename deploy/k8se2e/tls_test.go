//go:build k8se2e

package k8se2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Envoy terminates HTTPS itself (components/tls): specgate-public's port 443 serves the
// gateway's routes with the certificate of Secret specgate-tls, and when the Secret changes,
// every Envoy pod serves the new certificate once the kubelet has updated its files, with no
// restart.
func TestEnvoyServesHTTPS(t *testing.T) {
	c := up(t)
	certPEM, err := os.ReadFile(filepath.Join(serverCert(t), "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	ip := strings.TrimPrefix(c.public, "http://")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: publicHost},
		ForceAttemptHTTP2: true,
	}}
	// up may just have replaced the certificate of an earlier run: poll until this run's
	// verifies.
	var code int
	testutil.Eventually(t, 30*time.Second, "HTTPS through specgate-public:443 with the Secret's certificate", func() bool {
		resp, err := client.Get("https://" + ip + ":443/catalog/products")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		return resp.TLS != nil && resp.TLS.NegotiatedProtocol == "h2"
	})
	if code != 200 {
		t.Fatalf("HTTPS GET /catalog/products: %d, want 200", code)
	}

	restarts := c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=envoy", "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}")
	next := t.TempDir()
	rotated := testutil.ServerCert(t, next, publicHost, 2)
	began := time.Now()
	c.applyTLS(next)
	t.Cleanup(func() { c.applyTLS(serverCert(t)) })
	pods := c.podIPs("envoy")
	for _, pod := range pods {
		testutil.Eventually(t, 150*time.Second, "Envoy pod "+pod+" serving the rotated certificate", func() bool {
			serial := servedSerial(pod + ":8443")
			return serial != nil && serial.Cmp(rotated.SerialNumber) == 0
		})
	}
	t.Logf("figure: a renewed certificate served by all %d Envoy pods %s after the Secret changed (kubelet sync included)", len(pods), time.Since(began).Round(time.Second))
	if now := c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=envoy", "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}"); now != restarts {
		t.Errorf("Envoy restarted for the new certificate: restart counts %q → %q", restarts, now)
	}
}

// servedSerial is the serial number of the certificate addr serves, nil when it does not.
func servedSerial(addr string) *big.Int {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // the test compares the served certificate itself
		ServerName:         publicHost,
	})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
