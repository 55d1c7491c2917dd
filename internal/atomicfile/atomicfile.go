// Package atomicfile replaces a file in one rename, so that readers (a spec watcher, Envoy,
// a restarting replica) see the old file or the new one, never half of one, and the new one
// survives a crash (it is synced before the rename).
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with what write writes, with mode perm. The temporary file is a dot
// file beside path, which the spec loader and watchers ignore.
func Write(path string, perm os.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing left to remove
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), perm); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteFile is Write of b.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
