package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var built, plugin struct {
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

// Plugin is the authz plugin (extauthz/plugin, as make build builds it), built once per test
// process into a temporary directory; Main removes it too.
func Plugin(t TB) string {
	t.Helper()
	plugin.once.Do(func() {
		dir, err := os.MkdirTemp("", "specgate-wasm-")
		if err != nil {
			plugin.err = err
			return
		}
		plugin.bin = filepath.Join(dir, "authz-plugin.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", plugin.bin, "github.com/specgate/specgate/extauthz/plugin")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			plugin.err = fmt.Errorf("go build the authz plugin: %v\n%s", err, out)
		}
	})
	if plugin.err != nil {
		t.Fatal(plugin.err)
	}
	return plugin.bin
}

// Main is a TestMain for packages that use Specgate: it runs the tests, then removes the
// binary.
func Main(m *testing.M) {
	code := m.Run()
	RemoveSpecgate()
	os.Exit(code)
}

// RemoveSpecgate removes what Specgate and Plugin built, for a TestMain that does more than Main.
func RemoveSpecgate() {
	for _, b := range []string{built.bin, plugin.bin} {
		if b != "" {
			os.RemoveAll(filepath.Dir(b))
		}
	}
}
