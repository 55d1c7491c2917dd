// Package testutil holds what tests of several packages need: polling with a deadline, and
// finding the real binaries (Envoy, Redis) they run.
package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TB is the part of testing.TB the helpers need. Besides tests and benchmarks, a
// benchmark's helper program (test/bench/ratelimit/rediscluster) implements it to run the same
// servers outside go test.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Eventually polls cond every 10ms until it holds, and fails the test when within passes
// first. It returns how long cond took to hold.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Tool finds a binary the tests need: $env, else the copy the Makefile fetched into .tools
// (tools, relative to the module root), else name on PATH. A missing tool fails the test —
// never skips it: a test that skips can silently stop running. `make test` fetches them all.
// The one exception is the fast tier, `make unit` (SPECGATE_UNIT=1): there every test that
// needs a real binary (Envoy, Redis, etcd, kube-apiserver, kubectl) is skipped, by name.
func Tool(t TB, env, tools, name, makeTarget string) string {
	t.Helper()
	if os.Getenv("SPECGATE_UNIT") != "" {
		if s, ok := t.(interface{ Skip(...any) }); ok {
			s.Skip("make unit: needs " + name)
		}
	}
	if b := os.Getenv(env); b != "" {
		return b
	}
	if root, err := ModuleRoot(); err == nil {
		if b := filepath.Join(root, ".tools", tools); isExecutable(b) {
			return b
		}
	}
	if b, err := exec.LookPath(name); err == nil {
		return b
	}
	t.Fatalf("%s not found: run `make %s` (make test does), set %s or put %s on PATH", name, makeTarget, env, name)
	return ""
}

// ModuleRoot is the directory of go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func isExecutable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}
