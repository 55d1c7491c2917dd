package limiter

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/internal/redisurl"
)

// Redis is the store that replicas share: one counter per key and window, INCRBY and
// PEXPIREAT in a pipeline batched across concurrent calls, and a local cache of keys that
// are already over their limit.
type Redis struct {
	rdb   redis.UniversalClient
	clock TimeSource
	batch *batcher
	over  *overCache
}

var _ Limiter = (*Redis)(nil)

// RedisOptions tunes the Redis store; zero values take the defaults.
type RedisOptions struct {
	Clock TimeSource
	// Timeout bounds one pipeline (default 250ms). Envoy gives up after 20ms by default,
	// so a slower answer is useless.
	Timeout time.Duration
	// Workers is the number of pipelines in flight (default 4); MaxBatch the ops in one
	// pipeline (default 256).
	Workers, MaxBatch int
}

// NewRedis connects lazily to the store URL: one server, a cluster or Sentinel
// (internal/redisurl). On a cluster each pipeline is split by node, and a counter's key
// lives on the node of its slot.
func NewRedis(url string, o RedisOptions) (*Redis, error) {
	opt, _, err := redisurl.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("rate-limit store: %w", err)
	}
	if o.Clock == nil {
		o.Clock = SystemTime{}
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	// A retried pipeline would count its increments twice.
	opt.MaxRetries = -1
	// On a cluster, MOVED and ASK are followed at once, and a shard that is down is given up
	// without sleeping between attempts: a batch holds other shards' counts too, and Envoy
	// waits 20ms by default.
	opt.MinRetryBackoff, opt.MaxRetryBackoff = -1, -1
	// A dial may take longer than a command on a busy host; callers still give up at their
	// own deadline. Redis down must not cost several dial attempts each.
	opt.DialTimeout = max(time.Second, o.Timeout)
	opt.DialerRetries = 1
	opt.MinIdleConns = o.Workers
	// RESP2: INCRBY needs nothing of RESP3, and go-redis then skips push-notification checks.
	opt.Protocol = 2
	opt.ReadTimeout = o.Timeout
	opt.WriteTimeout = o.Timeout
	opt.PoolSize = max(opt.PoolSize, o.Workers)
	rdb := redis.NewUniversalClient(opt)
	return &Redis{
		rdb:   rdb,
		clock: o.Clock,
		batch: newBatcher(rdb, o.Workers, o.MaxBatch, o.Timeout),
		over:  newOverCache(),
	}, nil
}

func (r *Redis) DoLimit(ctx context.Context, hits []Hit, res []Result) error {
	now := r.clock.Now()
	ops := make([]op, 0, len(hits))
	idx := make([]int, 0, len(hits))
	for i, h := range hits {
		start, end, resetIn := window(now, h.Window)
		key := h.Key + ":" + strconv.FormatInt(start, 10)
		if r.over.has(key, h.Limit, now) {
			res[i] = Result{Over: true, ResetIn: resetIn, Local: true}
			continue
		}
		// The key outlives its window by a second so that a replica whose clock is a
		// little behind still finds the count.
		ops = append(ops, op{key: key, n: int64(h.Hits), expireAt: end.Add(time.Second)})
		idx = append(idx, i)
	}
	if len(ops) == 0 {
		return nil
	}
	counts, err := r.batch.do(ctx, ops)
	if err != nil {
		return fmt.Errorf("rate-limit store: %w", err)
	}
	for j, i := range idx {
		h := hits[i]
		_, end, resetIn := window(now, h.Window)
		res[i] = result(uint64(counts[j]), h, resetIn)
		// At the limit the next hit is over too: refuse it here until the window ends.
		if counts[j] >= int64(h.Limit) {
			r.over.add(ops[j].key, h.Limit, end, now)
		}
	}
	return nil
}

// Close stops the batcher and closes the connections.
func (r *Redis) Close() error {
	r.batch.close()
	return r.rdb.Close()
}
