package testkube

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
)

// proc is a child process whose output is kept in memory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     *logBuffer
	done    chan struct{} // closed when it has exited
	exitErr error         // set before done is closed
}

func startProc(name, bin string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, log: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = sysProcAttr()
	started := make(chan error)
	go func() {
		// Forked from a thread that lives until the child exits: on Linux the child gets
		// SIGKILL when that thread ends (Pdeathsig), which must be the test process's end.
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		err := p.cmd.Start()
		started <- err
		if err == nil {
			p.exitErr = p.cmd.Wait()
		}
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %v", bin, err)
	}
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the exit. Idempotent; a nil proc is a no-op.
func (p *proc) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// logBuffer keeps the last logCap bytes a process wrote (a shared cluster's apiserver runs
// for the whole test binary) and counts all of them.
type logBuffer struct {
	mu    sync.Mutex
	b     []byte
	total int64 // bytes ever written; b holds the last len(b) of them
}

const logCap = 4 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	l.total += int64(len(p))
	if len(l.b) > logCap {
		l.b = append(l.b[:0], l.b[len(l.b)-logCap/2:]...)
	}
	return len(p), nil
}

func (l *logBuffer) written() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// since is what was written after the first mark bytes, at most its last max bytes.
func (l *logBuffer) since(mark int64, max int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(l.total-mark, int64(len(l.b)), int64(max))
	if n <= 0 {
		return ""
	}
	s := string(l.b[int64(len(l.b))-n:])
	if n < l.total-mark {
		s = fmt.Sprintf("[%d earlier bytes not shown]\n", l.total-mark-n) + s
	}
	return s
}
