package main

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/specgate/specgate/extauthz/devissuer"
)

// zipfDraws is the length of the many-token sequence: longer than a measured run's requests
// at the rates seen here, so a run does not wrap around it.
const zipfDraws = 60_000

// zipfSequence mints n tokens of n users and returns draws of them by a Zipf distribution
// (s = 1.1: user k+1 is asked for about (k+1)^-1.1 as often as the first), seeded, so every
// variant and every run sees the same sequence.
func zipfSequence(key *devissuer.Key, n, draws int) ([]string, error) {
	start := time.Now()
	pool := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				pool[i], errs[i] = devissuer.Mint(key, issuer, audience, fmt.Sprintf("user-%05d", i), []string{"orders:read"}, time.Hour, nil)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(n-1))
	seq := make([]string, draws)
	seen := map[uint64]bool{}
	for i := range seq {
		k := z.Uint64()
		seen[k] = true
		seq[i] = pool[k]
	}
	logf("%d tokens minted in %s; %d draws by Zipf (s = 1.1) touch %d of them", n, time.Since(start).Round(time.Millisecond), draws, len(seen))
	return seq, nil
}
