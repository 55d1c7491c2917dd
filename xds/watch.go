package xds

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch recompiles the spec directory after its files change, debounced so that one change
// (an editor's save, a git checkout, the kubelet's ..data symlink swap of a ConfigMap) makes
// one rebuild. The directory itself is watched, not the files: the kubelet replaces the
// ..data link, and editors replace files by rename.
func (s *Server) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("xds: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(s.opts.SpecDir); err != nil {
		return fmt.Errorf("xds: watch %s: %w", s.opts.SpecDir, err)
	}
	var (
		timer  *time.Timer
		timerC <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(s.opts.Debounce)
			} else {
				timer.Reset(s.opts.Debounce)
			}
			timerC = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("spec watch error", "err", err)
		case <-timerC:
			timerC = nil
			if v, err := s.ReloadFromDisk("watch"); err != nil {
				s.log.Error("spec directory change refused; the last good snapshot stays live", "live", s.Version(), "err", err)
			} else {
				s.log.Debug("spec directory reloaded", "version", v)
			}
		}
	}
}
