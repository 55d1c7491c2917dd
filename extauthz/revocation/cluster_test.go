package revocation

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/specgate/specgate/internal/testredis"
	"github.com/specgate/specgate/internal/testutil"
)

// On a Redis Cluster, a revocation added through one replica reaches another replica's set
// over pub/sub, and a replica that starts later loads it (the set and its channel hash to one
// slot, so the add, trim and publish stay one transaction).
func TestRedisStoreOnCluster(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replica := func() (*RedisStore, *Set) {
		st, err := NewRedis(c.URL(), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		set := NewSet(1000, 1e-7)
		go func() { _ = st.Sync(ctx, set) }()
		testutil.Eventually(t, 10*time.Second, "the revocation set loaded from the cluster", set.Loaded)
		return st, set
	}
	a, _ := replica()
	_, setB := replica()
	now := time.Now()
	if err := a.Add(ctx, Entry{Key: JTIKey("on-cluster"), At: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 5*time.Second, "the revocation reached the other replica", func() bool {
		_, ok := setB.Lookup([]byte(JTIKey("on-cluster")))
		return ok
	})
	t.Logf("propagated in %s", took)
	_, setC := replica()
	if _, ok := setC.Lookup([]byte(JTIKey("on-cluster"))); !ok {
		t.Error("a replica started later did not load the revocation")
	}
}
