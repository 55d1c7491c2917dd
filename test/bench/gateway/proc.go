package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// proc is one child process of the benchmark: a specgate role, an Envoy or a peer. Its output
// is kept (bounded) for the error message when it fails to come up.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
}

// procs are every child started, stopped in reverse order by stopAll.
var (
	procsMu sync.Mutex
	procs   []*proc
)

func start(name string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &tail{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// A child never outlives the benchmark, even when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

// waitHTTP polls url until it answers 200 (or the process exits).
func (p *proc) waitHTTP(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready:\n%s", p.name, p.out)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s within %s:\n%s", p.name, url, timeout, p.out)
}

// stop sends SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	procs = nil
}

// tail keeps the last 64 KiB a process printed.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if n := len(t.b) - 64<<10; n > 0 {
		t.b = append([]byte(nil), t.b[n:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

func port(addr string) uint32 {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.ParseUint(p, 10, 16)
	return uint32(n)
}

// cpu is the CPU time (user + system) the process has used so far, from /proc (Linux).
func (p *proc) cpu() time.Duration { return cpuOf(p.cmd.Process.Pid) }

func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSample is the CPU each process spent per request of a run, in µs: the variant's Envoy,
// specgate authz, specgate ratelimit, the backend, specgate validate.
type cpuSample [5]float64

func (c cpuSample) String() string {
	return fmt.Sprintf("envoy %.0f authz %.0f rl %.0f backend %.0f validate %.0f", c[0], c[1], c[2], c[3], c[4])
}

func cpus(ps []*proc) []time.Duration {
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		out[i] = p.cpu()
	}
	return out
}

func perRequest(before, after []time.Duration, n uint64) cpuSample {
	var c cpuSample
	for i := range c {
		if n > 0 {
			c[i] = float64(after[i]-before[i]) / float64(time.Microsecond) / float64(n)
		}
	}
	return c
}

// machineBusy is the CPU time every process of the machine has used so far (/proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, x := range f[1:] {
		n, _ := strconv.ParseInt(x, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait, not guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// ownCPU is the CPU this benchmark and its children have used so far.
func ownCPU() time.Duration {
	t := cpuOf(os.Getpid())
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		t += p.cpu()
	}
	return t
}

// foreign measures the share of the machine that processes outside the benchmark used over
// a phase: other work on the machine makes the figures noisier, and the table says so.
type foreign struct {
	start       time.Time
	busy0, own0 time.Duration
	share       float64
}

func startForeign() *foreign {
	return &foreign{start: time.Now(), busy0: machineBusy(), own0: ownCPU()}
}

func (f *foreign) stop() {
	other := (machineBusy() - f.busy0) - (ownCPU() - f.own0)
	f.share = max(0, float64(other)/(float64(time.Since(f.start))*float64(runtime.NumCPU())))
}

// freeAddr is a loopback address that was free a moment ago, below the ephemeral port range
// (see testutil.PickPort).
func freeAddr() (string, error) {
	p, err := testutil.PickPort()
	return "127.0.0.1:" + strconv.Itoa(p), err
}
