package testredis

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/test/harness/testutil"
)

// SentinelMaster is the master name the Sentinel fixture monitors.
const SentinelMaster = "specgate"

// Sentinels is a primary, its replicas and three sentinels on loopback, failing over after
// one second without the primary.
type Sentinels struct {
	Primary   *Server
	Replicas  []*Server
	Sentinels []*Server
}

// StartSentinels runs them until the test ends and waits until every sentinel knows the
// primary and its replicas.
func StartSentinels(t testutil.TB, replicas int) *Sentinels {
	t.Helper()
	bin := Binary(t)
	st := &Sentinels{Primary: &Server{bin: bin, dir: t.TempDir(), t: t}}
	t.Cleanup(st.Primary.Stop)
	st.Primary.start(testutil.FreePort(t))
	host, port, _ := strings.Cut(st.Primary.Addr, ":")
	for range replicas {
		r := &Server{bin: bin, dir: t.TempDir(), t: t, args: []string{"--replicaof", host, port}}
		t.Cleanup(r.Stop)
		r.start(testutil.FreePort(t))
		st.Replicas = append(st.Replicas, r)
	}
	for range 3 {
		dir := t.TempDir()
		p := testutil.FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
			p, dir, SentinelMaster, host, port, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &Server{bin: bin, dir: dir, t: t, sentinelConf: conf}
		t.Cleanup(s.Stop)
		s.start(p)
		st.Sentinels = append(st.Sentinels, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReplicas(ctx, st.Primary, replicas); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		err := pollDo(ctx, func() error {
			rs, err := sc.Replicas(ctx, SentinelMaster).Result()
			if err != nil || len(rs) < replicas {
				return fmt.Errorf("sentinel %s sees %d replicas: %v", s.Addr, len(rs), err)
			}
			return nil
		})
		sc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// URL is the redis+sentinel:// URL of the fixture.
func (st *Sentinels) URL() string {
	var addrs []string
	for _, s := range st.Sentinels {
		addrs = append(addrs, s.Addr)
	}
	return "redis+sentinel://" + SentinelMaster + "@" + strings.Join(addrs, ",")
}

// PrimaryAddr is the primary the first sentinel names now.
func (st *Sentinels) PrimaryAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: st.Sentinels[0].Addr})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}
