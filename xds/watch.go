package xds

import (
	"context"
	"time"
)

// watch reloads the live set whenever the store says it may have moved: another replica
// committed a change set (Kubernetes), or someone edited the files (a directory: an editor's
// save, a git checkout, the kubelet's ..data swap of a mounted ConfigMap). Notices are
// debounced, so that one change of several files makes one rebuild.
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
	var (
		timer  *time.Timer
		timerC <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-changed:
			if timer == nil {
				timer = time.NewTimer(s.opts.Debounce)
			} else {
				timer.Reset(s.opts.Debounce)
			}
			timerC = timer.C
		case <-timerC:
			timerC = nil
			if v, err := s.Reload("watch"); err != nil {
				s.log.Error("the store's live set was refused; the last good snapshot stays live", "live", s.Version(), "err", err)
			} else {
				s.log.Debug("spec store reloaded", "version", v)
			}
		}
	}
}
