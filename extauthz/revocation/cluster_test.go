package revocation

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

// following is a store on url whose set follows it until the test ends, loaded once.
func following(t *testing.T, url string) (*RedisStore, *Set) {
	t.Helper()
	st, err := NewRedis(url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	set := NewSet(1000, 1e-7)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = st.Sync(ctx, set) }()
	testutil.Eventually(t, 10*time.Second, "the set loaded from "+url, set.Loaded)
	return st, set
}

// On a Redis Cluster, a revocation added through one replica reaches another replica's set
// over pub/sub, and a replica that starts later loads it (the set and its channel hash to one
// slot, so the add, trim and publish stay one transaction).
func TestRedisStoreOnCluster(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	ctx := t.Context()
	a, _ := following(t, c.URL())
	_, setB := following(t, c.URL())
	now := time.Now()
	if err := a.Add(ctx, jtiEntry("on-cluster", now)); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 5*time.Second, "the revocation reached the other replica", func() bool {
		return holds(setB, "on-cluster")
	})
	t.Logf("propagated in %s", took)
	_, setC := following(t, c.URL())
	if !holds(setC, "on-cluster") {
		t.Error("a replica started later did not load the revocation")
	}
}

// On a cluster, replicas follow the set over a shard channel on the node that owns its slot.
// With that master killed, its replica is promoted: revocations are accepted again, nothing
// revoked before is lost, and a running replica resubscribes and sees the new ones.
func TestRedisStoreClusterFailover(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	ctx := t.Context()
	writer, _ := following(t, c.URL())
	_, set := following(t, c.URL())

	owner := c.Owner(t, redisKey)
	node := redis.NewClient(&redis.Options{Addr: c.Masters[owner].Addr})
	subs, err := node.PubSubShardNumSub(ctx, redisChannel).Result()
	node.Close()
	if err != nil || subs[redisChannel] != 2 {
		t.Fatalf("shard subscribers on the slot's master: %v (%v), want both stores", subs, err)
	}
	now := time.Now()
	if err := writer.Add(ctx, jtiEntry("before", now)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the follower has the first revocation", func() bool {
		return holds(set, "before")
	})
	// Add returned once the slot's replica confirmed the write: the master is killed at once.
	c.Masters[owner].Stop()
	took := testutil.Eventually(t, 30*time.Second, "a revocation accepted after the failover", func() bool {
		return writer.Add(ctx, jtiEntry("after", now)) == nil
	})
	seen := testutil.Eventually(t, 15*time.Second, "the follower has both", func() bool {
		return holds(set, "before", "after")
	})
	t.Logf("failover: revocations accepted again after %s, seen by the follower %s later", took, seen)
	entries, err := writer.load(ctx)
	if err != nil || len(entries) != 2 {
		t.Fatalf("after the failover the store holds %d entries (%v), want 2", len(entries), err)
	}
}

// The slot of the set and its shard channel migrated to another master: the server
// unsubscribes the followers from the old node, they subscribe again where the slot now is,
// and a revocation added after the move reaches them.
func TestRedisStoreFollowsSlotMigration(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 0)
	ctx := t.Context()
	writer, _ := following(t, c.URL())
	_, set := following(t, c.URL())
	now := time.Now()
	if err := writer.Add(ctx, jtiEntry("before", now)); err != nil {
		t.Fatal(err)
	}
	to := (c.Owner(t, redisKey) + 1) % len(c.Masters)
	c.MigrateSlot(t, redisKey, to, 50*time.Millisecond)
	if err := writer.Add(ctx, jtiEntry("after", now)); err != nil {
		t.Fatalf("the first revocation after the migration: %v", err)
	}
	// Only the shard channel carries "after" to the follower: its set is not reloaded by
	// itself when nothing fails.
	testutil.Eventually(t, 10*time.Second, "the follower has the revocation added after the move", func() bool {
		return holds(set, "after")
	})
	node := redis.NewClient(&redis.Options{Addr: c.Masters[to].Addr})
	defer node.Close()
	testutil.Eventually(t, 10*time.Second, "both stores subscribed on the new owner", func() bool {
		return node.PubSubShardNumSub(ctx, redisChannel).Val()[redisChannel] == 2
	})
}

// Behind Sentinel, the primary killed: the sentinels promote the replica, revocations can
// be added again once they have, nothing revoked before is lost, and a running replica's set
// follows (it resubscribes and reloads).
func TestRedisStoreSentinelFailover(t *testing.T) {
	t.Parallel()
	st := testredis.StartSentinels(t, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := NewRedis(st.URL(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	set := NewSet(1000, 1e-7)
	go func() { _ = store.Sync(ctx, set) }()
	testutil.Eventually(t, 10*time.Second, "the set loaded through Sentinel", set.Loaded)
	now := time.Now()
	if err := store.Add(ctx, jtiEntry("before", now)); err != nil {
		t.Fatal(err)
	}
	// Add returned once the replica confirmed the write: the primary is killed at once.
	old := st.Primary.Addr
	st.Primary.Stop()
	took := testutil.Eventually(t, 30*time.Second, "a new primary", func() bool {
		a, err := st.PrimaryAddr(ctx)
		return err == nil && a != old
	})
	testutil.Eventually(t, 15*time.Second, "a revocation accepted after the failover", func() bool {
		return store.Add(ctx, jtiEntry("after", now)) == nil
	})
	t.Logf("failover in %s", took)
	testutil.Eventually(t, 15*time.Second, "the running replica's set has both", func() bool {
		return holds(set, "before", "after")
	})
	fresh, err := NewRedis(st.URL(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	entries, err := fresh.load(ctx)
	if err != nil || len(entries) != 2 {
		t.Fatalf("after the failover the store holds %d entries (%v), want 2", len(entries), err)
	}
}

// Redis replicates asynchronously: Add answers only once a replica holds the entry, so that
// a failover right after it cannot lose a revocation the API confirmed. While the replica is
// stalled, Add says the entry is not confirmed (it is stored on the primary, and the set has
// it); once the replica goes on, Add answers nil again.
func TestRedisStoreAddWaitsForAReplica(t *testing.T) {
	t.Parallel()
	st := testredis.StartSentinels(t, 1)
	store, set := following(t, st.URL())
	ctx := t.Context()
	now := time.Now()
	if err := store.Add(ctx, jtiEntry("confirmed", now)); err != nil {
		t.Fatal(err)
	}
	replica := redis.NewClient(&redis.Options{Addr: st.Replicas[0].Addr})
	defer replica.Close()
	if n := replica.ZCard(ctx, redisKey).Val(); n != 1 {
		t.Fatalf("right after Add the replica holds %d entries, want 1", n)
	}

	st.Replicas[0].Pause()
	start := time.Now()
	err := store.Add(ctx, jtiEntry("unconfirmed", now))
	st.Replicas[0].Resume()
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Add with the replica stalled: %v after %s, want ErrNotReplicated", err, time.Since(start))
	}
	t.Logf("Add with the replica stalled: %v after %s", err, time.Since(start).Round(time.Millisecond))
	testutil.Eventually(t, 5*time.Second, "the unconfirmed entry published all the same", func() bool {
		return holds(set, "confirmed", "unconfirmed")
	})
	testutil.Eventually(t, 10*time.Second, "Add confirmed again once the replica goes on", func() bool {
		return store.Add(ctx, jtiEntry("again", now)) == nil
	})
}

// Fan-out: one revocation reaches eight replicas' sets, each subscribed on its own, within a
// second; the figure is logged (docs/benchmarks.md).
func TestRevocationFanOutToEightReplicas(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sets []*Set
	var stores []*RedisStore
	for range 8 {
		st, err := NewRedis(srv.URL(), log)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		set := NewSet(1000, 1e-7)
		go func() { _ = st.Sync(ctx, set) }()
		testutil.Eventually(t, 10*time.Second, "loaded", set.Loaded)
		sets, stores = append(sets, set), append(stores, st)
	}
	now := time.Now()
	start := time.Now()
	if err := stores[0].Add(ctx, jtiEntry("fan-out", now)); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, time.Second, "every replica has the revocation", func() bool {
		for _, s := range sets {
			if !holds(s, "fan-out") {
				return false
			}
		}
		return true
	})
	t.Logf("revocation on 8 replicas %s after the add was sent (add included: %s)", took, time.Since(start))
}

// A cluster with a shard down (its master and replica gone) refuses revocations with an
// error — the API answers 503, nothing half-done — instead of hanging.
func TestRedisStoreClusterShardDown(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 1)
	st, err := NewRedis(c.URL(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	if err := st.Add(ctx, jtiEntry("up", now)); err != nil {
		t.Fatal(err)
	}
	owner := c.Owner(t, redisKey)
	c.Masters[owner].Stop()
	c.Replicas[owner].Stop()
	start := time.Now()
	err = st.Add(ctx, jtiEntry("down", now))
	if err == nil {
		t.Fatal("a revocation was accepted while its shard is down")
	}
	took := time.Since(start)
	if took > 15*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	t.Logf("refused after %s: %v", took.Round(time.Millisecond), err)
}

// jtiEntry revokes jti for an hour from now.
func jtiEntry(jti string, now time.Time) Entry {
	return Entry{Key: JTIKey(jti), At: now, Expires: now.Add(time.Hour)}
}

// holds reports whether set holds every one of these jtis.
func holds(set *Set, jtis ...string) bool {
	for _, j := range jtis {
		if _, ok := set.Lookup([]byte(JTIKey(j))); !ok {
			return false
		}
	}
	return true
}

// What a failed Add says: nothing stored when the connection was never made or Redis refused
// the transaction; unknown (ErrUncertain) when the write may have been applied.
func TestUncertainOnlyWhenTheWriteMayHaveLanded(t *testing.T) {
	for _, c := range []struct {
		err       error
		uncertain bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false},
		{refusal("MOVED 3999 127.0.0.1:6381"), false},
		{refusal("EXECABORT Transaction discarded because of previous errors."), false},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}, true},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
	} {
		if got := errors.Is(uncertain(c.err), ErrUncertain); got != c.uncertain {
			t.Errorf("%v: uncertain %v, want %v", c.err, got, c.uncertain)
		}
	}
}

// refusal is an error reply of Redis.
type refusal string

func (r refusal) Error() string { return string(r) }
func (r refusal) RedisError()   {}

// A Redis user whose ACL does not allow ROLE (an admin command) still revokes: without
// waiting for replicas, as before Add waited for them.
func TestAddWithoutRolePermission(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "authz", "on", ">pw", "~*", "&*",
		"+@read", "+@write", "+@pubsub", "+@transaction").Err(); err != nil {
		t.Fatal(err)
	}
	st, err := NewRedis("redis://authz:pw@"+srv.Addr+"/0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Add(t.Context(), jtiEntry("limited-user", time.Now())); err != nil {
		t.Fatalf("Add as a user without ROLE: %v", err)
	}
}

// A store that only writes (no subscription to notice the move) still has the old owner in
// its slot map after the set's slot migrated: Add follows the redirection instead of
// answering that nothing was revoked.
func TestRedisStoreAddFollowsAMovedSlot(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3, 0)
	st, err := NewRedis(c.URL(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.Add(t.Context(), jtiEntry("before", now)); err != nil {
		t.Fatal(err)
	}
	c.MigrateSlot(t, redisKey, (c.Owner(t, redisKey)+1)%len(c.Masters), 0)
	if err := st.Add(t.Context(), jtiEntry("after", now)); err != nil {
		t.Fatalf("the first revocation after the migration: %v", err)
	}
	entries, err := st.load(t.Context())
	if err != nil || len(entries) != 2 {
		t.Fatalf("the store holds %d entries (%v), want 2", len(entries), err)
	}
}
