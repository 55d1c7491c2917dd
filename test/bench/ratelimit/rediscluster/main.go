// Command rediscluster runs a Redis Cluster on loopback for test/bench/ratelimit/compare.sh, formed
// the way the tests form theirs (test/harness/testredis): it prints the redis+cluster:// URL on
// stdout once every node sees the cluster as ok, and stops the servers on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/specgate/specgate/test/harness/testredis"
)

func main() {
	masters := flag.Int("masters", 3, "masters (shards); no replicas")
	flag.Parse()
	p := &proc{}
	defer p.cleanup()
	// Before the servers start: a signal while the cluster forms must stop them too.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	formed := make(chan string)
	go func() { formed <- testredis.StartCluster(p, *masters, 0).URL() }()
	select {
	case url := <-formed:
		fmt.Println(url)
		<-sig
	case <-sig:
		<-formed // a server being started now would outlive an exit; StartCluster is bounded
	}
}

// proc is a testutil.TB for a program: a fatal error stops the servers and exits. Once it
// has cleaned up, a server registered later (the cluster was still forming) is stopped at once.
type proc struct {
	mu       sync.Mutex
	cleanups []func()
	done     bool
}

func (p *proc) Helper()                   {}
func (p *proc) Fatal(a ...any)            { p.fail(fmt.Sprint(a...)) }
func (p *proc) Fatalf(f string, a ...any) { p.fail(fmt.Sprintf(f, a...)) }

func (p *proc) Cleanup(f func()) {
	p.mu.Lock()
	done := p.done
	if !done {
		p.cleanups = append(p.cleanups, f)
	}
	p.mu.Unlock()
	if done {
		f()
	}
}

func (p *proc) TempDir() string {
	d, err := os.MkdirTemp("", "rediscluster-")
	if err != nil {
		p.fail(err.Error())
	}
	p.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (p *proc) fail(msg string) {
	fmt.Fprintln(os.Stderr, "rediscluster:", msg)
	p.cleanup()
	os.Exit(1)
}

func (p *proc) cleanup() {
	p.mu.Lock()
	fs := p.cleanups
	p.cleanups, p.done = nil, true
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
