// Package testutil holds what tests of several packages need: polling with a deadline.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test when within passes
// first. It returns how long cond took to hold.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
