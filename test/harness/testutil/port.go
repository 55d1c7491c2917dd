package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Ports handed to processes the tests start (Envoy, Redis, the services) come from below the
// kernel's ephemeral range (32768–60999 on Linux). A port taken from 127.0.0.1:0 and closed
// again is an ephemeral port: before the child binds it, any outgoing connection of a test
// running in parallel — a load test opens thousands — may take it as its local port, and
// the child fails with "address already in use". Below that range only another picker can
// take it, and the probe and the per-process set below make that unlikely.
const (
	portLow  = 10000
	portHigh = 22000 // a Redis Cluster node also binds port+10000: stays below 32768
)

var issued = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// PickPort returns a loopback port that was free a moment ago and that this process has
// not handed out before; each of alsoFree offsets (port+offset) was free too.
func PickPort(alsoFree ...int) (int, error) {
	issued.Lock()
	defer issued.Unlock()
	for range 1000 {
		p := portLow + rand.IntN(portHigh-portLow)
		if issued.ports[p] || !bindable(p) {
			continue
		}
		ok := true
		for _, off := range alsoFree {
			ok = ok && !issued.ports[p+off] && bindable(p+off)
		}
		if !ok {
			continue
		}
		issued.ports[p] = true
		for _, off := range alsoFree {
			issued.ports[p+off] = true
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d–%d after 1000 tries", portLow, portHigh)
}

// FreePort is PickPort for a test: it fails the test when no port is found.
func FreePort(t TB, alsoFree ...int) int {
	t.Helper()
	p, err := PickPort(alsoFree...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeAddr is FreePort as a 127.0.0.1:port address.
func FreeAddr(t TB) string {
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

func bindable(p int) bool {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
