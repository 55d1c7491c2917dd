// Package testredis starts a real redis-server for a test on a free loopback port.
package testredis

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Server is a running redis-server owned by one test.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string
	cmd  *exec.Cmd
	t    testing.TB
}

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs redis-server (from $REDIS_SERVER or PATH) until the test ends. A missing binary
// fails the test under CI and skips it elsewhere, so `go test` works on a bare laptop while CI
// proves the Redis paths.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("redis-server not found (install it; .ci/run does): %v", err)
			}
			t.Skipf("redis-server not found: %v", err)
		}
	}
	s := &Server{dir: t.TempDir(), t: t}
	s.start(bin, freePort(t))
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string, port int) {
	s.t.Helper()
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "yes", "--daemonize", "no")
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not accept connections within 10s", s.Addr)
}

// Stop kills the server (SIGKILL: a crash, not a clean shutdown). Idempotent.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
		s.cmd = nil
	}
}

// Restart brings the server back on the same port with the same append-only file, so what
// was written before a Stop is still there.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	_, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	s.start(bin, p)
}

func freePort(t testing.TB) int {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
