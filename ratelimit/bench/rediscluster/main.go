// Command rediscluster runs a Redis Cluster on loopback for ratelimit/bench/compare.sh, formed
// the way the tests form theirs (internal/testredis): it prints the redis+cluster:// URL on
// stdout once every node sees the cluster as ok, and stops the servers on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/specgate/specgate/internal/testredis"
)

func main() {
	masters := flag.Int("masters", 3, "masters (shards); no replicas")
	flag.Parse()
	p := &proc{}
	defer p.cleanup()
	c := testredis.StartCluster(p, *masters, 0)
	fmt.Println(c.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

// proc is a testutil.TB for a program: a fatal error stops the servers and exits.
type proc struct{ cleanups []func() }

func (p *proc) Helper()                   {}
func (p *proc) Cleanup(f func())          { p.cleanups = append(p.cleanups, f) }
func (p *proc) Fatal(a ...any)            { p.fail(fmt.Sprint(a...)) }
func (p *proc) Fatalf(f string, a ...any) { p.fail(fmt.Sprintf(f, a...)) }

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
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}
