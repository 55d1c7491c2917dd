package revocation

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/specgate/specgate/internal/atomicfile"
)

// FileStore keeps revocations in a JSON-lines file for a single replica without Redis.
// Each Add is appended and fsynced before it returns; Open compacts away expired entries.
type FileStore struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// OpenFile opens (creating if needed) the file at path and compacts it.
func OpenFile(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	entries, err := readFile(path)
	if err != nil {
		return nil, err
	}
	if err := compact(path, entries, time.Now()); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	return &FileStore{path: path, f: f}, nil
}

func readFile(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocation file: %w", err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		// A torn last line (crash mid-write, never acknowledged) is skipped.
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Key != "" {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", path, err)
	}
	return out, nil
}

// compact rewrites the file with the live entries (temp file, fsync, rename).
func compact(path string, entries []Entry, now time.Time) error {
	err := atomicfile.Write(path, 0o600, func(f io.Writer) error {
		w := bufio.NewWriter(f)
		enc := json.NewEncoder(w)
		for _, e := range entries {
			if e.Expires.After(now) {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
		}
		return w.Flush()
	})
	if err != nil {
		return fmt.Errorf("revocation file: %w", err)
	}
	return nil
}

func (s *FileStore) Add(_ context.Context, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return err
	}
	return s.f.Sync()
}

func (s *FileStore) Sync(ctx context.Context, set *Set) error {
	s.mu.Lock()
	entries, err := readFile(s.path)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	set.Replace(entries, time.Now())
	<-ctx.Done()
	return nil
}

func (s *FileStore) Durable() bool { return true }

func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
