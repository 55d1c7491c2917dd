package testredis

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/test/harness/testutil"
)

// Cluster is a Redis Cluster of real servers on loopback: masters with the 16,384 slots
// split evenly, each with replicas, formed with CLUSTER ADDSLOTSRANGE, MEET and REPLICATE.
type Cluster struct {
	Masters, Replicas []*Server
}

// StartCluster runs masters servers in cluster mode, each with replicasEach replicas,
// until the test ends, and waits until every node sees the cluster as ok. args are extra
// server options (for example "--cluster-require-full-coverage", "no").
func StartCluster(t testutil.TB, masters, replicasEach int, args ...string) *Cluster {
	t.Helper()
	c := &Cluster{}
	bin := Binary(t)
	node := func() *Server {
		s := &Server{bin: bin, dir: t.TempDir(), t: t,
			args: append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000"}, args...)}
		t.Cleanup(s.Stop)
		s.start(testutil.FreePort(t, 10000))
		return s
	}
	for range masters {
		c.Masters = append(c.Masters, node())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	do := func(s *Server, args ...any) *redis.Cmd {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer rdb.Close()
		return rdb.Do(ctx, args...)
	}
	const slots = 16384
	for i, m := range c.Masters {
		if err := do(m, "cluster", "addslotsrange", i*slots/masters, (i+1)*slots/masters-1).Err(); err != nil {
			t.Fatalf("cluster addslotsrange on %s: %v", m.Addr, err)
		}
	}
	for range masters * replicasEach {
		c.Replicas = append(c.Replicas, node())
	}
	first := c.Masters[0]
	for _, s := range append(append([]*Server{}, c.Masters[1:]...), c.Replicas...) {
		host, port, _ := strings.Cut(s.Addr, ":")
		if err := do(first, "cluster", "meet", host, port).Err(); err != nil {
			t.Fatalf("cluster meet %s: %v", s.Addr, err)
		}
	}
	for i, r := range c.Replicas {
		master := c.Masters[i/max(replicasEach, 1)]
		id := do(master, "cluster", "myid").Val()
		if err := pollDo(ctx, func() error { return do(r, "cluster", "replicate", id).Err() }); err != nil {
			t.Fatalf("cluster replicate %s of %s: %v", r.Addr, master.Addr, err)
		}
	}
	for _, m := range c.Masters {
		if err := waitReplicas(ctx, m, replicasEach); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.all() {
		err := pollDo(ctx, func() error {
			if info := do(s, "cluster", "info").String(); !strings.Contains(info, "cluster_state:ok") {
				return context.DeadlineExceeded
			}
			return nil
		})
		if err != nil {
			t.Fatalf("cluster not ok on %s within 30s", s.Addr)
		}
	}
	return c
}

// waitReplicas waits until the primary lists n replicas in ROLE: the replicas a write can
// wait for (WAIT) are online.
func waitReplicas(ctx context.Context, primary *Server, n int) error {
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer rdb.Close()
	err := pollDo(ctx, func() error {
		role, err := rdb.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) != 3 {
			return fmt.Errorf("ROLE %v", role)
		}
		if rs, _ := role[2].([]any); len(rs) < n {
			return fmt.Errorf("%d of %d replicas online", len(rs), n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replicas of %s: %w", primary.Addr, err)
	}
	return nil
}

// Owner is the index in Masters of the master serving key's slot as the cluster was formed
// (slots split evenly, in order).
func (c *Cluster) Owner(t testutil.TB, key string) int {
	t.Helper()
	_, owner := c.slotOwner(t, key)
	return owner
}

// slotOwner is key's slot and Owner.
func (c *Cluster) slotOwner(t testutil.TB, key string) (int64, int) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.Masters[0].Addr})
	defer rdb.Close()
	slot, err := rdb.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("cluster keyslot %q: %v", key, err)
	}
	i := len(c.Masters) - 1
	for int(slot) < i*16384/len(c.Masters) {
		i--
	}
	return slot, i
}

// MigrateSlot moves the slot of key, with key, from its master as the cluster was formed
// (Owner: migrate a slot once) to Masters[to] the way
// redis-cli --cluster reshard does (IMPORTING, MIGRATING, MIGRATE, then NODE on both), pausing
// between the steps so that clients meet each stage.
func (c *Cluster) MigrateSlot(t testutil.TB, key string, to int, pause time.Duration) {
	t.Helper()
	ctx := context.Background()
	slot, from := c.slotOwner(t, key)
	nodes := make([]*redis.Client, len(c.Masters))
	ids := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		nodes[i] = redis.NewClient(&redis.Options{Addr: m.Addr})
		defer nodes[i].Close()
		ids[i], _ = nodes[i].Do(ctx, "cluster", "myid").Text()
	}
	host, port, _ := strings.Cut(c.Masters[to].Addr, ":")
	for _, s := range [][]any{
		{to, "cluster", "setslot", slot, "importing", ids[from]},
		{from, "cluster", "setslot", slot, "migrating", ids[to]},
		{from, "migrate", host, port, "", 0, 5000, "keys", key},
		{to, "cluster", "setslot", slot, "node", ids[to]},
		{from, "cluster", "setslot", slot, "node", ids[to]},
	} {
		if err := nodes[s[0].(int)].Do(ctx, s[1:]...).Err(); err != nil { // MIGRATE of no key answers +NOKEY, not an error
			t.Fatalf("%v: %v", s[1:], err)
		}
		time.Sleep(pause)
	}
}

func (c *Cluster) all() []*Server { return append(append([]*Server{}, c.Masters...), c.Replicas...) }

// URL is the redis+cluster:// URL with every master as a seed.
func (c *Cluster) URL() string {
	var addrs []string
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr)
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// pollDo retries f every 50ms until it succeeds or ctx ends.
func pollDo(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
