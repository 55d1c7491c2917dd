package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/internal/redisurl"
)

// Redis names. The sorted set scores each entry by its expiry (unix seconds), so expired
// entries are trimmed with one ZREMRANGEBYSCORE; the channel carries each new entry.
const (
	redisKey     = "specgate:revocations"
	redisChannel = "specgate:revocations"
)

// RedisStore is the durable store shared by every replica, on one server, a cluster or
// behind Sentinel (internal/redisurl). The set is one key and the channel has the same name,
// so both hash to one slot: the add, trim and publish of an entry stay one MULTI on a
// cluster too. On a cluster the channel is a shard channel (SPUBLISH/SSUBSCRIBE, Redis 7 and
// Valkey): a message travels only within the shard that owns the slot instead of being
// broadcast over the cluster bus to every node.
type RedisStore struct {
	rdb        redis.UniversalClient
	sharded    bool
	log        *slog.Logger
	roleDenied sync.Once
}

// NewRedis connects lazily: a Redis that is down at start is retried by Sync.
func NewRedis(rawURL string, log *slog.Logger) (*RedisStore, error) {
	opt, topo, err := redisurl.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("revocation store: %w", err)
	}
	// Fail fast: the revoke API answers 503 rather than hanging while Redis is away.
	opt.DialTimeout = time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.MaxRetries = 1
	return &RedisStore{rdb: redis.NewUniversalClient(opt), sharded: topo == redisurl.Cluster, log: log}, nil
}

func (s *RedisStore) Durable() bool { return true }
func (s *RedisStore) Close() error  { return s.rdb.Close() }

// Add stores, trims and publishes e in one MULTI/EXEC transaction on the primary that owns
// the set, then, when that primary has replicas, waits until one of them holds it too (WAIT):
// Redis replicates asynchronously, and a revocation answered 200 must survive a failover.
func (s *RedisStore) Add(ctx context.Context, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err = s.add(ctx, e, string(b))
		if err == nil || errors.Is(err, ErrNotReplicated) {
			return err
		}
		redisurl.Reroute(ctx, s.rdb)
		// A cluster's redirections (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: the transaction was
		// refused, nothing is stored) are followed by the reloaded slot map, which the
		// cluster client does by itself for every other command.
		if _, cluster := s.rdb.(*redis.ClusterClient); !cluster || attempt == 3 || !redirected(err) {
			return uncertain(err)
		}
		select {
		case <-ctx.Done():
			return uncertain(err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// uncertain marks err ErrUncertain unless it proves that nothing was stored: the connection
// was never made, or Redis answered with an error (the transaction was refused whole). A
// timeout or a connection lost after the write was sent leaves it unknown.
func uncertain(err error) error {
	var (
		redisErr redis.Error
		opErr    *net.OpError
	)
	if errors.As(err, &redisErr) || errors.As(err, &opErr) && opErr.Op == "dial" {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUncertain, err)
}

// redirected reports a cluster's answer that the slot is elsewhere or moving.
func redirected(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "EXECABORT"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// replicaWait bounds how long Add waits for a replica to confirm a write.
const replicaWait = time.Second

func (s *RedisStore) add(ctx context.Context, e Entry, member string) error {
	// WAIT counts the replicas that hold this connection's writes: the write and the WAIT
	// go over one connection to the primary that owns the key.
	var conn *redis.Conn
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		primary, err := c.MasterForKey(ctx, redisKey)
		if err != nil {
			return err
		}
		conn = primary.Conn()
	case *redis.Client: // one server, or the primary Sentinel names
		conn = c.Conn()
	default:
		return fmt.Errorf("unexpected Redis client %T", s.rdb)
	}
	defer conn.Close()
	_, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, redisKey, redis.Z{Score: float64(e.Expires.Unix()), Member: member})
		p.ZRemRangeByScore(ctx, redisKey, "-inf", "("+strconv.FormatInt(time.Now().Unix(), 10))
		if s.sharded {
			p.SPublish(ctx, redisChannel, member)
		} else {
			p.Publish(ctx, redisChannel, member)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Stored and published from here on: a failure is ErrNotReplicated, not "nothing stored".
	replicas, err := s.replicas(ctx, conn)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	if replicas == 0 {
		return nil // no replica connected: as durable as the primary alone (its append-only file)
	}
	acked, err := conn.Wait(ctx, 1, replicaWait).Result()
	if err == nil && acked < 1 {
		err = fmt.Errorf("no replica confirmed the write within %s", replicaWait)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	return nil
}

// replicas is how many replicas the server behind conn has connected (ROLE), an error when it
// is no longer a primary. A user whose ACL does not allow ROLE (it is an admin command) gets
// the old behaviour, no wait for replicas, and one warning.
func (s *RedisStore) replicas(ctx context.Context, conn *redis.Conn) (int, error) {
	role, err := conn.Do(ctx, "ROLE").Slice()
	if redis.HasErrorPrefix(err, "NOPERM") {
		s.roleDenied.Do(func() {
			s.log.Warn("the Redis user may not run ROLE: revocations are confirmed without waiting for a replica (grant +role)", "err", err)
		})
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(role) != 3 || role[0] != "master" {
		return 0, fmt.Errorf("the server is no longer a primary (ROLE %v)", role[0])
	}
	replicas, _ := role[2].([]any)
	return len(replicas), nil
}

// load reads every live entry with ZSCAN (one bounded reply at a time, however large the
// set); duplicates that ZSCAN may return are harmless.
func (s *RedisStore) load(ctx context.Context) ([]Entry, error) {
	now := time.Now()
	var out []Entry
	var cursor uint64
	for {
		kv, next, err := s.rdb.ZScan(ctx, redisKey, cursor, "", 10000).Result()
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			var e Entry
			if json.Unmarshal([]byte(kv[i]), &e) == nil && e.Key != "" && e.Expires.After(now) {
				out = append(out, e)
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// Sync subscribes first and loads after every (re)subscription, so no entry published
// between the two is lost. go-redis resubscribes by itself after a reconnect and hands
// back a *redis.Subscription, which is the signal to reload the whole set. A subscription
// that fails otherwise (a shard channel whose slot moved: the server unsubscribes it, or
// answers MOVED) is given up: Sync reloads the cluster's slot map and subscribes anew, on
// the node that owns the slot now.
func (s *RedisStore) Sync(ctx context.Context, set *Set) error {
	st := syncState{needReload: true, healthy: true, backoff: minBackoff}
	for ctx.Err() == nil {
		s.follow(ctx, set, &st)
	}
	return nil
}

const minBackoff = 50 * time.Millisecond

type syncState struct {
	needReload, healthy bool
	backoff             time.Duration // before the next attempt after a failure
}

// follow runs one subscription until ctx ends or it fails.
func (s *RedisStore) follow(ctx context.Context, set *Set, st *syncState) {
	var ps *redis.PubSub
	if s.sharded {
		ps = s.rdb.SSubscribe(ctx, redisChannel)
	} else {
		ps = s.rdb.Subscribe(ctx, redisChannel)
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()

	for ctx.Err() == nil {
		if st.needReload {
			entries, err := s.load(ctx)
			if err == nil {
				set.Replace(entries, time.Now())
				st.needReload = false
				if !st.healthy {
					s.log.Info("revocation store reachable again: set reloaded", "entries", set.Len())
				}
				st.healthy = true
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				_ = ps.Ping(ctx) // an idle link: prove it is alive
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if st.healthy {
				s.log.Warn("revocation store unreachable: checks go on with the last known set", "err", err)
				st.healthy = false
			}
			s.retry(ctx, st)
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			st.needReload = true
			if m.Kind == "sunsubscribe" { // the slot moved
				s.retry(ctx, st)
				return
			}
		case *redis.Message:
			st.backoff = minBackoff // a working subscription
			var e Entry
			if err := json.Unmarshal([]byte(m.Payload), &e); err == nil && e.Key != "" {
				set.Add(e, time.Now())
			}
		}
	}
}

// retry prepares the next subscription: a full reload, the slot map reloaded, a pause.
func (s *RedisStore) retry(ctx context.Context, st *syncState) {
	st.needReload = true
	redisurl.Reroute(ctx, s.rdb)
	select {
	case <-ctx.Done():
	case <-time.After(st.backoff):
	}
	st.backoff = min(st.backoff*2, time.Second)
}
