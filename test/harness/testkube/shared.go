package testkube

import (
	"os"
	"sync"
	"testing"
	"time"
)

var shared struct {
	inMain bool // Run is running the tests: it will stop the cluster
	once   sync.Once
	c      *Cluster
	err    error
	dir    string
	took   time.Duration
}

// Shared is one Cluster for every test of the package (started by the first caller, about
// 4 s, then returned at once), stopped when the tests end by the package's TestMain, which
// must be Main or call Run:
//
//	func TestMain(m *testing.M) { testkube.Main(m) }
//
// Tests on it see each other's cluster-scoped objects and should work in their own
// Namespace. When a test fails, what etcd and kube-apiserver logged during it is printed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !shared.inMain {
		t.Fatal("testkube.Shared needs the package's TestMain to be testkube.Main(m) (or to call testkube.Run(m)): it stops the shared cluster")
	}
	etcdBin, apiserverBin := binaries(t) // outside once: a missing binary fails every caller
	shared.once.Do(func() {
		began := time.Now()
		if shared.dir, shared.err = os.MkdirTemp("", "testkube-"); shared.err != nil {
			return
		}
		shared.c, shared.err = start(shared.dir, etcdBin, apiserverBin)
		shared.took = time.Since(began)
	})
	if shared.err != nil {
		t.Fatalf("testkube.Shared: %v", shared.err) // every caller: the cluster is started once
	}
	c := shared.c
	etcdMark, apiserverMark := c.logMarks()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("while this test ran (shared cluster at %s, ready in %s):\n%s", c.Config.Host, shared.took.Round(time.Millisecond), c.logs(etcdMark, apiserverMark))
		}
	})
	return c
}

// Run runs the tests (m.Run), then stops the Shared cluster if one was started, and returns
// m.Run's exit code: for a TestMain that does more than Main.
func Run(m *testing.M) int {
	shared.inMain = true
	code := m.Run()
	if shared.c != nil {
		shared.c.stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

// Main is a TestMain for packages that use Shared: Run, then exit with its code.
func Main(m *testing.M) { os.Exit(Run(m)) }
