package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	bin  string
	err  error
}

// Specgate is cmd/specgate, built once per test process into a temporary directory (60 MB);
// a package that uses it removes it with Main. Stamped with the VCS revision (-buildvcs=auto
// overrides a GOFLAGS=-buildvcs=false) as make build stamps it.
func Specgate(t TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "specgate-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.bin = filepath.Join(dir, "specgate")
		if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", built.bin, "github.com/specgate/specgate/cmd/specgate").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// Main is a TestMain for packages that use Specgate: it runs the tests, then removes the
// binary.
func Main(m *testing.M) {
	code := m.Run()
	RemoveSpecgate()
	os.Exit(code)
}

// RemoveSpecgate removes the binary Specgate built, for a TestMain that does more than Main.
func RemoveSpecgate() {
	if built.bin != "" {
		os.RemoveAll(filepath.Dir(built.bin))
	}
}
