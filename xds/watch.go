package xds

import (
	"context"
	"errors"
	"time"
)

// watch reloads the live set whenever the store says it may have moved: another replica
// committed a change set (Kubernetes), or someone edited the files (a directory: an editor's
// save, a git checkout, the kubelet's ..data swap of a mounted ConfigMap). Notices are
// debounced, so that one change of several files makes one rebuild. A reload that failed for
// another reason than a refused set (the API server unreachable, a read cut short) is tried
// again with backoff, and every resync period the live set is read anyway: a missed notice or
// a failed read never leaves a replica behind for good.
func (s *Server) watch(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- s.store.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	timer := time.NewTimer(s.opts.Debounce)
	if s.current.Load() != nil {
		timer.Stop() // loaded at start; otherwise try again at once
	}
	resync := time.NewTicker(s.opts.Resync)
	defer resync.Stop()
	retry := time.Second
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-changed:
			timer.Reset(s.opts.Debounce)
		case <-resync.C:
			timer.Reset(0)
		case <-timer.C:
			v, err := s.Reload("watch")
			var refused *RefusedError
			switch {
			case err == nil:
				retry = time.Second
				s.log.Debug("spec store reloaded", "version", v)
			case errors.As(err, &refused) || errors.Is(err, errEmptyStore):
				s.log.Error("the store's live set was refused; the last good snapshot stays live", "live", s.Version(), "err", err)
			default:
				s.log.Warn("reading the spec store failed; trying again", "in", retry, "err", err)
				timer.Reset(retry)
				retry = min(2*retry, 30*time.Second)
			}
		}
	}
}
