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
		plugin.err = BuildWasm("github.com/specgate/specgate/extauthz/plugin", plugin.bin)
	})
	if plugin.err != nil {
		t.Fatal(plugin.err)
	}
	return plugin.bin
}

// BuildWasm compiles the main package pkg into out as a proxy-wasm module for Envoy: GOOS=wasip1,
// -buildmode=c-shared, as make build does.
func BuildWasm(pkg, out string) error {
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for wasip1: %v\n%s", pkg, err, b)
	}
	return nil
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
