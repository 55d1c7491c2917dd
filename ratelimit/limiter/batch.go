package limiter

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/specgate/specgate/internal/redisurl"
)

// errClosed is returned for calls made after Close.
var errClosed = errors.New("limiter: closed")

// op is one counter increment: INCRBY key n, then PEXPIREAT key expireAt.
type op struct {
	key      string
	n        int64
	expireAt time.Time
}

// call is one DoLimit's share of a pipeline.
type call struct {
	ops    []op
	counts []int64
	err    error
	done   chan struct{}
}

// batcher sends the ops of concurrent calls to Redis in shared pipelines. Each worker takes
// one call, adds whatever other calls are already waiting (up to maxOps), and sends them as
// one pipeline. It never waits for company: when Redis is quick the batches are small and
// add no latency; when every worker is busy the queue grows and so do the batches, which is
// when a round trip per request would cost the most.
type batcher struct {
	rdb     redis.UniversalClient
	calls   chan *call
	quit    chan struct{}
	wg      sync.WaitGroup
	maxOps  int
	timeout time.Duration
}

func newBatcher(rdb redis.UniversalClient, workers, maxOps int, timeout time.Duration) *batcher {
	b := &batcher{
		rdb:     rdb,
		calls:   make(chan *call, 4096),
		quit:    make(chan struct{}),
		maxOps:  maxOps,
		timeout: timeout,
	}
	b.wg.Add(workers)
	for range workers {
		go b.work()
	}
	return b
}

// do runs ops in some pipeline and returns the counters after each increment.
func (b *batcher) do(ctx context.Context, ops []op) ([]int64, error) {
	c := &call{ops: ops, done: make(chan struct{})}
	select {
	case b.calls <- c:
	case <-b.quit:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-c.done:
		return c.counts, c.err
	case <-b.quit:
		return nil, errClosed
	case <-ctx.Done():
		// The worker still owns c and finishes it; nobody reads the answer.
		return nil, ctx.Err()
	}
}

func (b *batcher) work() {
	defer b.wg.Done()
	var batch []*call
	for {
		select {
		case <-b.quit:
			return
		case c := <-b.calls:
			batch = append(batch[:0], c)
			n := len(c.ops)
		more:
			for n < b.maxOps {
				select {
				case c := <-b.calls:
					batch = append(batch, c)
					n += len(c.ops)
				default:
					break more
				}
			}
			b.exec(batch, n)
			clear(batch)
		}
	}
}

func (b *batcher) exec(batch []*call, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	pipe := b.rdb.Pipeline()
	incrs := make([]*redis.IntCmd, 0, n)
	expires := make([]*redis.BoolCmd, 0, n)
	for _, c := range batch {
		for _, o := range c.ops {
			incrs = append(incrs, pipe.IncrBy(ctx, o.key, o.n))
			expires = append(expires, pipe.PExpireAt(ctx, o.key, o.expireAt))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil { // errors are read per command below
		redisurl.Reroute(ctx, b.rdb)
	}
	i := 0
	for _, c := range batch {
		c.counts = make([]int64, len(c.ops))
		for j := range c.ops {
			v, err := incrs[i].Result()
			if err == nil {
				// A counter without expiry would stay in Redis forever: a store error too.
				err = expires[i].Err()
			}
			if err != nil && c.err == nil {
				c.err = err
			}
			c.counts[j] = v
			i++
		}
		close(c.done)
	}
}

func (b *batcher) close() {
	close(b.quit)
	b.wg.Wait()
}
