package specstore

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func asBytes(files map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = []byte(v)
	}
	return out
}

func equalFiles(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) })
}

// A commit replaces the whole set (added, changed and removed files), numbers it, keeps the
// old sets readable, and refuses a writer whose expected revision is stale.
func TestDirCommitHistoryConflict(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": "a1", "b.yaml": "b1", "notes.txt": "not a spec"})
	d, err := OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	rev, files, err := d.Live(ctx)
	if err != nil || rev.Number != 0 || len(files) != 2 {
		t.Fatalf("fresh directory: %+v %v %v", rev, files, err)
	}
	r1, err := d.Commit(ctx, files, Meta{Reason: "first"}, 0)
	if err != nil || r1.Number != 1 {
		t.Fatalf("record the directory: %+v %v", r1, err)
	}
	second := asBytes(map[string]string{"a.yaml": "a2", "c.json": "c1"})
	r2, err := d.Commit(ctx, second, Meta{Reason: "second", Author: "ci"}, 1)
	if err != nil || r2.Number != 2 {
		t.Fatalf("second commit: %+v %v", r2, err)
	}
	live, got, err := d.Live(ctx)
	if err != nil || live.Number != 2 || live.Digest != r2.Digest || !equalFiles(got, second) {
		t.Fatalf("live after the second commit: %+v %v %v", live, got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.yaml")); !os.IsNotExist(err) {
		t.Error("b.yaml is not in the set but is still in the directory")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(b) != "not a spec" {
		t.Error("a file that is not a spec was touched")
	}
	var conflict *ConflictError
	if _, err := d.Commit(ctx, asBytes(map[string]string{"x.yaml": "x"}), Meta{}, 1); !errors.As(err, &conflict) || conflict.Live != 2 || conflict.Expected != 1 {
		t.Fatalf("stale writer: %v, want a conflict naming live 2", err)
	}
	hist, err := d.History(ctx)
	if err != nil || len(hist) != 2 || hist[0].Number != 2 || hist[0].Author != "ci" || hist[1].Reason != "first" {
		t.Fatalf("history: %+v %v", hist, err)
	}
	old, err := d.Files(ctx, 1)
	if err != nil || !equalFiles(old, asBytes(map[string]string{"a.yaml": "a1", "b.yaml": "b1"})) {
		t.Fatalf("files of revision 1: %v %v", old, err)
	}
	if _, err := d.Files(ctx, 7); !errors.Is(err, ErrUnknownRevision) {
		t.Fatalf("an unknown revision: %v", err)
	}
}

// A process killed after the commit point (the journal written, the files half rewritten)
// leaves a directory that the next OpenDir completes: the whole new set, recorded.
func TestDirRollsForwardAnInterruptedCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": "a1", "b.yaml": "b1"})
	d, err := OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit(ctx, asBytes(map[string]string{"a.yaml": "a1", "b.yaml": "b1"}), Meta{}, 0); err != nil {
		t.Fatal(err)
	}
	// What a commit of {a: a2, c: c1} leaves when it dies after writing one file.
	next := asBytes(map[string]string{"a.yaml": "a2", "c.yaml": "c1"})
	rev := newRevision(2, next, Meta{Reason: "interrupted"}, time.Now())
	for name, b := range next {
		writeFiles(t, filepath.Join(dir, ".specgate", "blobs"), map[string]string{rev.Files[name]: string(b)})
	}
	j, _ := json.Marshal(rev)
	writeFiles(t, filepath.Join(dir, ".specgate"), map[string]string{"pending.json": string(j)})
	writeFiles(t, dir, map[string]string{"a.yaml": "a2"})

	d, err = OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	live, files, err := d.Live(ctx)
	if err != nil || live.Number != 2 || live.Reason != "interrupted" || !equalFiles(files, next) {
		t.Fatalf("after recovery: %+v %v %v", live, files, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".specgate", "pending.json")); !os.IsNotExist(err) {
		t.Error("the journal is still there")
	}
}

// History is bounded, and a blob no kept revision names is deleted with it.
func TestDirPrunes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDir(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, content := range []string{"v1", "v2", "v3"} {
		if _, err := d.Commit(ctx, asBytes(map[string]string{"a.yaml": content}), Meta{}, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	hist, _ := d.History(ctx)
	if len(hist) != 2 || hist[1].Number != 2 {
		t.Fatalf("history after 3 commits, keep 2: %+v", hist)
	}
	if _, err := os.Stat(filepath.Join(dir, ".specgate", "blobs", Digest([]byte("v1")))); !os.IsNotExist(err) {
		t.Error("the blob of the pruned revision is still stored")
	}
	if _, err := d.Files(ctx, 2); err != nil {
		t.Errorf("a kept revision: %v", err)
	}
}

func TestValidFileName(t *testing.T) {
	for name, want := range map[string]bool{"orders.yaml": true, "Orders.YML": true, "a_b-1.json": true,
		"../x.yaml": false, "sub/x.yaml": false, ".hidden.yaml": false, "x.txt": false, ".yaml": false, "": false} {
		if got := ValidFileName(name); got != want {
			t.Errorf("ValidFileName(%q) = %t, want %t", name, got, want)
		}
	}
}

// A journal or a record naming a file outside the directory (../x.yaml) is refused, never
// written: records are read back from disk.
func TestDirRefusesNamesOutsideTheDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "specs")
	for _, sub := range []string{"blobs", "revisions"} {
		if err := os.MkdirAll(filepath.Join(dir, ".specgate", sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	content := []byte("owned")
	rev := newRevision(1, map[string][]byte{"../escape.yaml": content}, Meta{}, time.Now())
	writeFiles(t, filepath.Join(dir, ".specgate", "blobs"), map[string]string{Digest(content): string(content)})
	j, _ := json.Marshal(rev)
	writeFiles(t, filepath.Join(dir, ".specgate"), map[string]string{"pending.json": string(j)})
	if _, err := OpenDir(dir, 0); err == nil || !strings.Contains(err.Error(), `names file "../escape.yaml"`) {
		t.Errorf("OpenDir with a journal naming ../escape.yaml: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "escape.yaml")); err == nil {
		t.Error("a file was written outside the spec directory")
	}
}
