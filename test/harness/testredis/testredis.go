// Package testredis starts a real Redis-protocol server for a test on a free loopback port:
// $REDIS_SERVER, or Valkey from .tools/valkey (make redis, which make test runs), or
// redis-server on PATH.
package testredis

import (
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Server is a running redis-server owned by one test.
type Server struct {
	Addr string // 127.0.0.1:port
	bin  string
	args []string // beyond port, bind, dir and persistence (cluster mode, replicaof)
	// sentinelConf, when set, runs a sentinel from that (writable) config file instead.
	sentinelConf string
	dir          string
	cmd          *exec.Cmd
	t            testutil.TB
}

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs the server until the test ends. A missing binary fails the test.
func Start(t testutil.TB, args ...string) *Server {
	t.Helper()
	s := &Server{bin: Binary(t), dir: t.TempDir(), t: t, args: args}
	t.Cleanup(s.Stop) // before start: a start that fails half-way leaves nothing running
	s.start(testutil.FreePort(t))
	return s
}

// Binary is the server binary: $REDIS_SERVER, .tools/valkey/valkey-server (make redis) or
// redis-server on PATH.
func Binary(t testutil.TB) string {
	t.Helper()
	return testutil.Tool(t, "REDIS_SERVER", "valkey/valkey-server", "redis-server", "redis")
}

func (s *Server) start(port int) {
	s.t.Helper()
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if s.sentinelConf != "" {
		s.cmd = exec.Command(s.bin, s.sentinelConf, "--sentinel")
	} else {
		s.cmd = exec.Command(s.bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", s.dir, "--save", "", "--appendonly", "yes", "--daemonize", "no"}, s.args...)...)
	}
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s on %s did not accept connections within 10s", s.bin, s.Addr)
}

// Stop kills the server (SIGKILL: a crash, not a clean shutdown). Idempotent.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
		s.cmd = nil
	}
}

// Pause freezes the server (SIGSTOP) until Resume: it keeps its connections and answers
// nothing, as a stalled node does.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart brings the server back on the same port with the same append-only file, so what
// was written before a Stop is still there.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	_, port, _ := net.SplitHostPort(s.Addr)
	p, _ := strconv.Atoi(port)
	s.start(p)
}
