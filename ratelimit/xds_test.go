package ratelimit

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// controlPlane is a go-control-plane ADS server on loopback that counts NACKs.
type controlPlane struct {
	cache cache.SnapshotCache
	addr  string
	gs    *grpc.Server
	nacks atomic.Int64
}

func startControlPlane(t *testing.T, addr string, snap cache.SnapshotCache) *controlPlane {
	t.Helper()
	cp := &controlPlane{cache: snap}
	cb := server.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
		if r.GetErrorDetail() != nil {
			cp.nacks.Add(1)
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.NewServer(ctx, snap, cb)
	cp.gs = grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(cp.gs, srv)
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cp.addr = l.Addr().String()
	go func() { _ = cp.gs.Serve(l) }()
	t.Cleanup(func() { cp.gs.Stop(); cancel() })
	return cp
}

func (cp *controlPlane) set(t *testing.T, version string, cfgs ...*rlsconf.RateLimitConfig) {
	t.Helper()
	res := make([]types.Resource, len(cfgs))
	for i, c := range cfgs {
		res[i] = c
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{resource.RateLimitConfigType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), "rl-test", snap); err != nil {
		t.Fatal(err)
	}
}

// routeLimit is the compiled config of one route-wide limit on orders.list.
func routeLimit(n uint32, unit rlsconf.RateLimitUnit) *rlsconf.RateLimitConfig {
	return &rlsconf.RateLimitConfig{Name: "specgate", Domain: policy.Domain, Descriptors: []*rlsconf.RateLimitDescriptor{{
		Key: policy.DescRoute, Value: "orders.list",
		Descriptors: []*rlsconf.RateLimitDescriptor{{
			Key: policy.DescLimit, Value: "0",
			RateLimit: &rlsconf.RateLimitPolicy{Unit: unit, RequestsPerUnit: n},
		}},
	}}}
}

func TestXDSSubscription(t *testing.T) {
	t.Parallel()
	snaps := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	// A port below the ephemeral range: the restart below binds it again, and an outgoing
	// connection of any process could take a port the kernel chose.
	cp := startControlPlane(t, testutil.FreeAddr(t), snaps)
	cp.set(t, "1", routeLimit(1, rlsconf.RateLimitUnit_HOUR))

	clock := &fakeClock{}
	clock.Set(t0)
	s, c := start(t, Options{Config: config.Default(), XDSAddr: cp.addr, NodeID: "rl-test", Clock: clock})
	testutil.Eventually(t, 10*time.Second, "first config", s.Service().Ready)
	list := d("route", "orders.list", "limit", "0")
	if r := ask(t, c, list); r.OverallCode != ok {
		t.Fatalf("first request: %v", r)
	}
	if r := ask(t, c, list); r.OverallCode != over {
		t.Fatalf("second request of 1/hour: %v", r)
	}

	limitIs := func(n uint32) func() bool {
		return func() bool { return ask(t, c, list).Statuses[0].CurrentLimit.GetRequestsPerUnit() == n }
	}
	cp.set(t, "2", routeLimit(50, rlsconf.RateLimitUnit_MINUTE))
	testutil.Eventually(t, 10*time.Second, "the swap to 50/minute", limitIs(50))

	// A config the service cannot build is NACKed and the live one stays.
	cp.set(t, "3", routeLimit(7, rlsconf.RateLimitUnit_UNKNOWN))
	testutil.Eventually(t, 10*time.Second, "a NACK", func() bool { return cp.nacks.Load() > 0 })
	if !limitIs(50)() {
		t.Fatal("the live config changed after a NACK")
	}

	// The control plane restarts: the service reconnects and takes the new snapshot.
	addr := cp.addr
	cp.gs.Stop()
	snaps2 := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	cp2 := startControlPlane(t, addr, snaps2)
	cp2.set(t, "4", routeLimit(60, rlsconf.RateLimitUnit_MINUTE))
	testutil.Eventually(t, 10*time.Second, "the config of the restarted control plane", limitIs(60))
	if n := metric(t, s.Service(), "specgate_ratelimit_config_updates_total", "result", "accepted"); n != 3 {
		t.Errorf("accepted updates = %v, want 3", n)
	}
}
