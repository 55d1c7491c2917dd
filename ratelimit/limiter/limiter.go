// Package limiter counts hits in fixed windows. One narrow interface, Limiter, has two stores:
// Memory for a single replica and Redis for replicas that share each quota.
package limiter

import (
	"context"
	"time"
)

// TimeSource tells the time; tests inject a fake one so that windows are exact.
type TimeSource interface{ Now() time.Time }

// SystemTime is the wall clock.
type SystemTime struct{}

func (SystemTime) Now() time.Time { return time.Now() }

// Hit asks to add Hits to counter Key in its current window and compare the sum with Limit.
type Hit struct {
	Key    string        // the bucket without its window; callers bound its length
	Limit  uint32        // requests allowed per window
	Window time.Duration // a whole number of seconds; windows align to the Unix epoch
	Hits   uint32        // at least 1
}

// Result is the state of one counter after a Hit.
type Result struct {
	Over      bool
	Remaining uint32
	ResetIn   time.Duration
	// Local is set when the answer came from the local over-limit cache, not the store.
	Local bool
}

// Limiter counts hits. DoLimit fills res[i] for hits[i]; on error res is undefined and
// nothing about the hits is known.
type Limiter interface {
	DoLimit(ctx context.Context, hits []Hit, res []Result) error
	Close() error
}

// window returns the start (Unix seconds) of the fixed window of length w holding now, its
// end, and the time until that end.
func window(now time.Time, w time.Duration) (start int64, end time.Time, resetIn time.Duration) {
	secs := int64(w / time.Second)
	if secs < 1 {
		secs = 1
	}
	u := now.Unix()
	start = u - u%secs
	end = time.Unix(start+secs, 0)
	return start, end, end.Sub(now)
}

// result compares count, the counter after the hit, with the limit.
func result(count uint64, h Hit, resetIn time.Duration) Result {
	if count > uint64(h.Limit) {
		return Result{Over: true, ResetIn: resetIn}
	}
	return Result{Remaining: h.Limit - uint32(count), ResetIn: resetIn}
}
