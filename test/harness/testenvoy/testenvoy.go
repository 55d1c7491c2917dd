// Package testenvoy runs a real Envoy for a test: found through $ENVOY_BIN, the project's
// .tools/envoy (installed by `make envoy`) or PATH.
package testenvoy

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Binary returns the Envoy binary: $ENVOY_BIN, .tools/envoy/envoy (make envoy) or envoy on
// PATH. A missing Envoy fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	return testutil.Tool(t, "ENVOY_BIN", "envoy/envoy", "envoy", "envoy")
}

// Validate runs `envoy --mode validate` on a config file.
func Validate(t testing.TB, configPath string) error {
	t.Helper()
	out, err := exec.Command(Binary(t), "--mode", "validate", "-c", configPath, "--log-level", "warn").CombinedOutput()
	if err != nil {
		return fmt.Errorf("envoy --mode validate %s: %v\n%s", configPath, err, out)
	}
	return nil
}

// Envoy is a running Envoy owned by one test.
type Envoy struct {
	AdminAddr string
	cmd       *exec.Cmd
	log       *LogBuffer
	done      chan struct{}
}

// Start runs Envoy on the config file until the test ends and waits until its admin answers
// /ready with LIVE. adminAddr must be the admin address the config names. Two workers unless
// extraArgs name --concurrency.
func Start(t testing.TB, configPath, adminAddr string, extraArgs ...string) *Envoy {
	t.Helper()
	e := &Envoy{AdminAddr: adminAddr, log: &LogBuffer{}, done: make(chan struct{})}
	args := []string{"-c", configPath, "--use-dynamic-base-id", "--log-level", "warn",
		"--drain-time-s", "1", "--parent-shutdown-time-s", "2"}
	if !slices.Contains(extraArgs, "--concurrency") {
		args = append(args, "--concurrency", "2")
	}
	args = append(args, extraArgs...)
	e.cmd = exec.Command(Binary(t), args...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start envoy: %v", err)
	}
	go func() { _ = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy log:\n%s", e.log.String())
		}
	})
	if err := e.WaitReady(30 * time.Second); err != nil {
		t.Fatalf("%v\nenvoy log:\n%s", err, e.log.String())
	}
	return e
}

// WaitReady polls the admin /ready endpoint until Envoy is LIVE.
func (e *Envoy) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("envoy exited before it was ready")
		default:
		}
		if resp, err := c.Get("http://" + e.AdminAddr + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("envoy admin %s not ready within %s", e.AdminAddr, timeout)
}

// Stat reads one counter or gauge from the admin /stats endpoint (0 when absent).
func (e *Envoy) Stat(name string) (string, error) {
	resp, err := http.Get("http://" + e.AdminAddr + "/stats?filter=^" + name + "$")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			return v, nil
		}
	}
	return "", nil
}

// Log is what Envoy printed so far.
func (e *Envoy) Log() string { return e.log.String() }

// Stop terminates Envoy and waits for it. Idempotent.
func (e *Envoy) Stop() {
	if e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// LogBuffer collects a child process's output; safe to read while it is written.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
