// Package testkube runs a real etcd and a real kube-apiserver on loopback for a test:
// etcd is $ETCD_BIN or etcd on PATH (make etcd), kube-apiserver is $KUBE_APISERVER,
// .tools/kube/kube-apiserver (make kube) or on PATH; make test provides both. A missing binary fails
// the test, never skips it.
//
// There is no controller manager, scheduler or kubelet: objects are stored, validated,
// admitted and authorized as in a real cluster, but nothing acts on them (a Deployment
// makes no pods, a deleted namespace stays Terminating).
//
// Start gives a test its own cluster (about 4 s to start on 2 cores). Shared gives every
// test of a package one cluster, started on first use and stopped by the package's TestMain:
//
//	func TestMain(m *testing.M) { testkube.Main(m) }
//
// Tests on a shared cluster keep apart by working in their own Namespace.
package testkube

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/specgate/specgate/test/harness/testutil"
)

// AdminUser is the user name of Cluster.Config; it is in group system:masters.
const AdminUser = "testkube-admin"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Config has admin credentials (a bearer token of AdminUser) and verifies the
	// apiserver's self-signed certificate. It is shared: rest.CopyConfig before changing it.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file with the same server and credentials.
	Kubeconfig string

	etcd, apiserver *proc
	clientCA        *x509.Certificate // signs User's client certificates
	clientCAKey     crypto.Signer
}

// Start runs etcd and kube-apiserver for the test (or benchmark), waits until the apiserver
// is ready, and stops both at the test's end. When the test fails, their logs are printed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	etcdBin, apiserverBin := binaries(t)
	began := time.Now()
	c, err := start(t.TempDir(), etcdBin, apiserverBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before TempDir's removal: registered after it
		c.stop()
		if t.Failed() {
			t.Logf("%s", c.logs(0, 0))
		}
	})
	t.Logf("testkube: kube-apiserver %s ready in %s", c.Config.Host, time.Since(began).Round(time.Millisecond))
	return c
}

// binaries finds etcd and kube-apiserver, failing the test when one is missing.
func binaries(t testing.TB) (etcd, apiserver string) {
	t.Helper()
	return testutil.Tool(t, "ETCD_BIN", "etcd/etcd", "etcd", "etcd"),
		testutil.Tool(t, "KUBE_APISERVER", "kube/kube-apiserver", "kube-apiserver", "kube")
}

// Client is a clientset for c.Config.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// User returns a rest.Config and the path of a kubeconfig file for a second, non-admin user
// named name, in no group but system:authenticated: RBAC allows it nothing until a
// (Cluster)RoleBinding names it. The apiserver authenticates it by a client certificate
// (CN name, no O) that this cluster's client CA signs here: unlike a static token, which
// the apiserver reads only when it starts, a certificate can be issued for any name later.
func (c *Cluster) User(t testing.TB, name string) (*rest.Config, string) {
	t.Helper()
	if name == "" || name == AdminUser {
		t.Fatalf("testkube.User: name %q is empty or the admin's", name)
	}
	certPEM, keyPEM, err := clientCert(c.clientCA, c.clientCAKey, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config) // server and CA, without the admin token
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(path, cfg, name); err != nil {
		t.Fatal(err)
	}
	return cfg, path
}

// Namespace creates a namespace with a fresh name (from the test's name) and returns the
// name. It also creates the namespace's "default" ServiceAccount, as the controller manager
// would, so that pods can be admitted. The namespace is not deleted: with no namespace
// controller, deletion would leave it Terminating; it goes when the cluster stops.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := c.Client(t)
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: namePrefix(t.Name())},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	_, err = cs.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create default service account in %s: %v", ns.Name, err)
	}
	return ns.Name
}

var notInLabel = regexp.MustCompile(`[^a-z0-9]+`)

// namePrefix is a GenerateName prefix from a test name: a DNS label part ending in "-",
// short enough for the 5 random characters the apiserver appends.
func namePrefix(testName string) string {
	p := strings.Trim(notInLabel.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	if len(p) > 40 {
		p = strings.TrimRight(p[:40], "-")
	}
	if p == "" {
		p = "test"
	}
	return p + "-"
}

// start runs etcd and kube-apiserver with their files in dir and waits until the apiserver
// is ready. On error nothing is left running and the error carries the logs.
func start(dir, etcdBin, apiserverBin string) (_ *Cluster, err error) {
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.stop()
			err = fmt.Errorf("%w\n%s", err, c.logs(0, 0))
		}
	}()
	ports := make([]int, 3) // etcd client, etcd peer, apiserver
	for i := range ports {
		if ports[i], err = testutil.PickPort(); err != nil {
			return nil, err
		}
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.etcd, err = startProc("etcd", etcdBin, etcdEnv(), "--name", "default",
		"--data-dir", filepath.Join(dir, "etcd"), "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL)
	if err != nil {
		return nil, fmt.Errorf("%v (make etcd installs etcd)", err)
	}

	certDir := filepath.Join(dir, "apiserver")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return nil, err
	}
	token, err := c.writeAuthFiles(certDir)
	if err != nil {
		return nil, err
	}
	// etcd healthy first: an etcd that cannot start is then reported as that, not as the
	// apiserver's storage errors.
	if err := waitETCD(c.etcd, etcdURL, 30*time.Second); err != nil {
		return nil, err
	}
	apiAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	c.apiserver, err = startProc("kube-apiserver", apiserverBin, os.Environ(),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+certDir, // it writes a self-signed apiserver.crt there
		"--client-ca-file="+filepath.Join(certDir, "client-ca.crt"),
		"--token-auth-file="+filepath.Join(certDir, "tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(certDir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(certDir, "sa.key"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		// The lease reconciler refuses a loopback advertise address; nothing here needs the
		// kubernetes Service's endpoints to name the apiserver.
		"--endpoint-reconciler-type=none",
		"--profiling=false")
	if err != nil {
		return nil, fmt.Errorf("%v (make kube builds kube-apiserver)", err)
	}
	// The serving certificate is written before the port is bound: once it accepts, the
	// file is complete.
	if err := waitListening(c.apiserver, apiAddr, 30*time.Second); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")) // the certificate and its CA
	if err != nil {
		return nil, err
	}
	c.Config = &rest.Config{
		Host:            "https://" + apiAddr,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca}, // its SANs include 127.0.0.1
		// client-go's default 5 requests/s would throttle tests that set up many objects.
		QPS: 200, Burst: 400,
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Config, AdminUser); err != nil {
		return nil, err
	}
	if err := waitReady(c.apiserver, c.Config, 60*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// writeAuthFiles writes the static token file (the admin's token, which it returns), the
// client CA that User's certificates chain to, and the service account key pair.
func (c *Cluster) writeAuthFiles(dir string) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	// token,user,uid,"group1,group2"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"),
		[]byte(token+","+AdminUser+","+AdminUser+",system:masters\n"), 0o600); err != nil {
		return "", err
	}
	caPEM, ca, caKey, err := newCA("testkube-client-ca")
	if err != nil {
		return "", err
	}
	c.clientCA, c.clientCAKey = ca, caKey
	if err := os.WriteFile(filepath.Join(dir, "client-ca.crt"), caPEM, 0o600); err != nil {
		return "", err
	}
	pub, priv, err := serviceAccountKey()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pub, 0o600); err != nil {
		return "", err
	}
	return token, os.WriteFile(filepath.Join(dir, "sa.key"), priv, 0o600)
}

// etcdEnv is the environment without ETCD_* variables: etcd reads those as flags, and the
// Makefile exports ETCD_BIN.
func etcdEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

func waitETCD(p *proc, url string, within time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	return poll(p, within, "etcd healthy at "+url, func() error {
		resp, err := hc.Get(url + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}

func waitListening(p *proc, addr string, within time.Duration) error {
	return poll(p, within, "kube-apiserver listening on "+addr, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// waitReady polls /readyz with the admin credentials: ready means storage, RBAC's bootstrap
// roles and the other start-up hooks are done, and the TLS and token setup works.
func waitReady(p *proc, cfg *rest.Config, within time.Duration) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return poll(p, within, "kube-apiserver /readyz ok", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// poll runs f every 100ms until it succeeds, p exits, or within passes.
func poll(p *proc, within time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited while waiting for %s: %v", p.name, what, p.exitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %s (last error: %v)", within, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills kube-apiserver, then etcd (SIGKILL: the data dir is thrown away anyway), and
// waits for both. Idempotent.
func (c *Cluster) stop() {
	c.apiserver.kill()
	c.etcd.kill()
}

// logs is the tail of both processes' output since the marks (see logMarks), at most 64 KiB
// each.
func (c *Cluster) logs(etcdMark, apiserverMark int64) string {
	var b strings.Builder
	for _, l := range []struct {
		p    *proc
		mark int64
	}{{c.etcd, etcdMark}, {c.apiserver, apiserverMark}} {
		if l.p != nil {
			fmt.Fprintf(&b, "----- %s log -----\n%s\n", l.p.name, l.p.log.since(l.mark, 64<<10))
		}
	}
	return b.String()
}

// logMarks is how much each process has logged so far.
func (c *Cluster) logMarks() (etcd, apiserver int64) {
	return c.etcd.log.written(), c.apiserver.log.written()
}
