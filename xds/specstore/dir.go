package specstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/internal/atomicfile"
)

// Dir is a Store on a directory. The live set is the spec files in the directory itself, so a
// person can edit them and git can check them out; the history is under DIR/.specgate:
//
//	blobs/<sha256>          each file content once
//	revisions/<N>.json      the record of revision N (a Revision)
//	pending.json            a commit that is being applied (the journal)
//	lock                    held (flock) by the process that commits
//
// A commit stores its blobs, then writes pending.json (the commit point), then rewrites the
// spec files and records the revision. A process that dies after the commit point is rolled
// forward by the next OpenDir, so the directory ends with the whole old set or the whole new
// one.
type Dir struct {
	dir, meta string
	keep      int
	mu        sync.Mutex // one commit at a time in this process; flock across processes
}

// DefaultKeep is how many revisions a store keeps for rollback and history.
const DefaultKeep = 50

// OpenDir opens the store on dir, finishing a commit that a crash interrupted. keep bounds the
// history (0: DefaultKeep). A read-only directory (a mounted ConfigMap) can be read and
// watched; commits to it fail.
func OpenDir(dir string, keep int) (*Dir, error) {
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("spec directory %q: not a directory (%v)", dir, err)
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	d := &Dir{dir: dir, meta: filepath.Join(dir, ".specgate"), keep: keep}
	if _, err := os.Stat(filepath.Join(d.meta, "pending.json")); err == nil {
		unlock, err := d.lock(syscall.LOCK_EX)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := d.recover(); err != nil {
			return nil, fmt.Errorf("spec directory %s: finish the interrupted commit: %w", dir, err)
		}
	}
	return d, nil
}

// Path is the directory.
func (d *Dir) Path() string { return d.dir }

func (d *Dir) Live(context.Context) (Revision, map[string][]byte, error) {
	// A commit whose journal is written is the live set, even if a crash (or a failed write)
	// left the files half rewritten: finish it before reading.
	if _, err := os.Stat(filepath.Join(d.meta, "pending.json")); err == nil {
		unlock, err := d.lock(syscall.LOCK_EX)
		if err != nil {
			return Revision{}, nil, err
		}
		err = d.recover()
		unlock()
		if err != nil {
			return Revision{}, nil, fmt.Errorf("spec directory %s: finish the interrupted commit: %w", d.dir, err)
		}
	}
	// Not while another process applies a commit; a read-only directory has no committers.
	if unlock, err := d.lock(syscall.LOCK_SH); err == nil {
		defer unlock()
	}
	files, err := compiler.ReadDir(d.dir)
	if err != nil {
		return Revision{}, nil, err
	}
	last, err := d.latest()
	if err != nil {
		return Revision{}, nil, err
	}
	return last, files, nil
}

// begin takes the locks of a write (this process's, then the directory's), finishes a commit
// another process left half done, and returns the latest revision and the function that
// releases the locks.
func (d *Dir) begin(files map[string][]byte) (Revision, func(), error) {
	if err := checkNames(files); err != nil {
		return Revision{}, nil, err
	}
	for _, sub := range []string{"blobs", "revisions"} {
		if err := os.MkdirAll(filepath.Join(d.meta, sub), 0o755); err != nil {
			return Revision{}, nil, fmt.Errorf("spec directory %s: %w", d.dir, err)
		}
	}
	d.mu.Lock()
	unlock, err := d.lock(syscall.LOCK_EX)
	if err != nil {
		d.mu.Unlock()
		return Revision{}, nil, err
	}
	end := func() { unlock(); d.mu.Unlock() }
	var last Revision
	if err = d.recover(); err == nil {
		last, err = d.latest()
	}
	if err != nil {
		end()
		return Revision{}, nil, err
	}
	return last, end, nil
}

func (d *Dir) Commit(_ context.Context, files map[string][]byte, meta Meta, expect int64) (Revision, error) {
	last, end, err := d.begin(files)
	if err != nil {
		return Revision{}, err
	}
	defer end()
	if last.Number != expect {
		return Revision{}, &ConflictError{Expected: expect, Live: last.Number}
	}
	rev := newRevision(expect+1, files, meta, time.Now())
	if err := d.storeBlobs(rev, files); err != nil {
		return Revision{}, err
	}
	b, err := json.MarshalIndent(rev, "", "  ")
	if err != nil {
		return Revision{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(d.meta, "pending.json"), b, 0o644); err != nil {
		return Revision{}, fmt.Errorf("spec directory %s: write the commit journal: %w", d.dir, err)
	}
	if err := d.recover(); err != nil {
		return Revision{}, fmt.Errorf("revision %d is committed (%s) but the spec files could not be rewritten: %w; the next read, commit or restart finishes it",
			rev.Number, filepath.Join(d.meta, "pending.json"), err)
	}
	d.prune()
	return rev, nil
}

// RecordEdit records files, which a person or git wrote into the directory, as revision
// expect+1 without touching the files: if they changed again since they were read, it is a
// conflict and the next reload records the newer ones.
func (d *Dir) RecordEdit(_ context.Context, files map[string][]byte, meta Meta, expect int64) (Revision, error) {
	last, end, err := d.begin(files)
	if err != nil {
		return Revision{}, err
	}
	defer end()
	now, err := compiler.ReadDir(d.dir)
	if err != nil {
		return Revision{}, err
	}
	rev := newRevision(expect+1, files, meta, time.Now())
	if last.Number != expect || FilesDigest(now) != rev.Digest {
		return Revision{}, &ConflictError{Expected: expect, Live: last.Number}
	}
	if err := d.storeBlobs(rev, files); err != nil {
		return Revision{}, err
	}
	b, err := json.MarshalIndent(rev, "", "  ")
	if err != nil {
		return Revision{}, err
	}
	if err := atomicfile.WriteFile(d.revisionPath(rev.Number), b, 0o644); err != nil {
		return Revision{}, err
	}
	d.prune()
	return rev, nil
}

func (d *Dir) storeBlobs(rev Revision, files map[string][]byte) error {
	for name, sum := range rev.Files {
		p := filepath.Join(d.meta, "blobs", sum)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := atomicfile.WriteFile(p, files[name], 0o644); err != nil {
			return fmt.Errorf("store %s: %w", name, err)
		}
	}
	return nil
}

// recover applies pending.json, if any, to the spec files and records its revision. It is
// idempotent, so a crash inside it is finished by the next call.
func (d *Dir) recover() error {
	b, err := os.ReadFile(filepath.Join(d.meta, "pending.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rev Revision
	if err := json.Unmarshal(b, &rev); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(d.meta, "pending.json"), err)
	}
	if err := rev.check(); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(d.meta, "pending.json"), err)
	}
	cur, err := compiler.ReadDir(d.dir)
	if err != nil {
		return err
	}
	for name, sum := range rev.Files {
		if old, ok := cur[name]; ok && Digest(old) == sum {
			continue
		}
		blob, err := d.blob(sum)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(filepath.Join(d.dir, name), blob, 0o644); err != nil {
			return err
		}
	}
	for name := range cur {
		if _, keep := rev.Files[name]; !keep {
			if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := atomicfile.WriteFile(d.revisionPath(rev.Number), b, 0o644); err != nil {
		return err
	}
	return os.Remove(filepath.Join(d.meta, "pending.json"))
}

func (d *Dir) blob(sum string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(d.meta, "blobs", sum))
	if err != nil {
		return nil, fmt.Errorf("spec store: blob %s: %w", sum, err)
	}
	if Digest(b) != sum {
		return nil, fmt.Errorf("spec store: blob %s is corrupt", sum)
	}
	return b, nil
}

func (d *Dir) revisionPath(n int64) string {
	return filepath.Join(d.meta, "revisions", fmt.Sprintf("%012d.json", n))
}

// numbers lists the recorded revisions, oldest first.
func (d *Dir) numbers() ([]int64, error) {
	entries, err := os.ReadDir(filepath.Join(d.meta, "revisions"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range entries {
		if n, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".json"), 10, 64); err == nil && strings.HasSuffix(e.Name(), ".json") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (d *Dir) read(n int64) (Revision, error) {
	b, err := os.ReadFile(d.revisionPath(n))
	if errors.Is(err, fs.ErrNotExist) {
		return Revision{}, ErrUnknownRevision
	}
	if err != nil {
		return Revision{}, err
	}
	var r Revision
	if err := json.Unmarshal(b, &r); err != nil {
		return Revision{}, fmt.Errorf("%s: %w", d.revisionPath(n), err)
	}
	if err := r.check(); err != nil {
		return Revision{}, fmt.Errorf("%s: %w", d.revisionPath(n), err)
	}
	return r, nil
}

// latest is the newest recorded revision (zero if none).
func (d *Dir) latest() (Revision, error) {
	ns, err := d.numbers()
	if err != nil || len(ns) == 0 {
		return Revision{}, err
	}
	return d.read(ns[len(ns)-1])
}

func (d *Dir) History(context.Context) ([]Revision, error) {
	ns, err := d.numbers()
	if err != nil {
		return nil, err
	}
	out := make([]Revision, 0, len(ns))
	for _, n := range slices.Backward(ns) {
		r, err := d.read(n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *Dir) Files(_ context.Context, n int64) (map[string][]byte, error) {
	r, err := d.read(n)
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(r.Files))
	for name, sum := range r.Files {
		if files[name], err = d.blob(sum); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// prune drops the revisions past keep and the blobs no kept revision names. It runs under the
// lock, so no commit is between storing its blobs and recording its revision.
func (d *Dir) prune() {
	ns, err := d.numbers()
	if err != nil {
		return
	}
	if len(ns) > d.keep {
		for _, n := range ns[:len(ns)-d.keep] {
			_ = os.Remove(d.revisionPath(n))
		}
		ns = ns[len(ns)-d.keep:]
	}
	used := map[string]bool{}
	for _, n := range ns {
		r, err := d.read(n)
		if err != nil {
			return // keep every blob rather than guess
		}
		for _, sum := range r.Files {
			used[sum] = true
		}
	}
	entries, err := os.ReadDir(filepath.Join(d.meta, "blobs"))
	if err != nil {
		return
	}
	for _, e := range entries {
		if !used[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
			_ = os.Remove(filepath.Join(d.meta, "blobs", e.Name()))
		}
	}
}

// lock takes the directory's commit lock (LOCK_EX to commit, LOCK_SH to read), across
// processes.
func (d *Dir) lock(how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(d.meta, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spec directory %s: lock: %w", d.dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("spec directory %s: lock: %w", d.dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Watch reports changes to the directory itself (not the files: the kubelet replaces the
// ..data link of a mounted ConfigMap, and editors replace files by rename). The caller
// debounces: one change is often several events.
func (d *Dir) Watch(ctx context.Context, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("spec store: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(d.dir); err != nil {
		return fmt.Errorf("spec store: watch %s: %w", d.dir, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op != fsnotify.Chmod && !strings.HasPrefix(filepath.Base(ev.Name), ".specgate") {
				changed()
			}
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
			changed() // events were lost (a queue overflow): reread the whole directory
		}
	}
}
