package xds

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/xds/specstore"
)

// A commit whose journal was written but whose files were rewritten only in part (a crash, a
// full disk) is finished before anything reads the directory: the whole new set is served,
// never the new orders beside the old catalog.
func TestHalfAppliedCommitIsFinishedBeforeServing(t *testing.T) {
	s, dir := newShop(t)
	next := map[string][]byte{
		"orders.yaml":   shopSpec("orders", "/orders/{id}", "/orders"),
		"shipping.yaml": shopSpec("shipping", "/shipping"),
	}
	sums := map[string]string{}
	for name, b := range next {
		sums[name] = specstore.Digest(b)
		if err := os.WriteFile(filepath.Join(dir, ".specgate", "blobs", sums[name]), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j, _ := json.Marshal(specstore.Revision{Number: 2, Files: sums, Digest: specstore.SetDigest(sums)})
	if err := os.WriteFile(filepath.Join(dir, ".specgate", "pending.json"), j, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orders.yaml"), next["orders.yaml"], 0o644); err != nil { // one file of two
		t.Fatal(err)
	}
	if _, err := s.Reload("watch"); err != nil {
		t.Fatal(err)
	}
	st := s.current.Load()
	if st.revision.Number != 2 || st.service("catalog") != nil || st.service("shipping") == nil {
		t.Fatalf("served revision %d: catalog %t, shipping %t; want revision 2 whole", st.revision.Number, st.service("catalog") != nil, st.service("shipping") != nil)
	}
}

// flaky is a store whose second read fails once, as an API server timeout would.
type flaky struct {
	*specstore.Dir
	calls atomic.Int32
}

func (f *flaky) Live(ctx context.Context) (specstore.Revision, map[string][]byte, error) {
	if f.calls.Add(1) == 2 {
		return specstore.Revision{}, nil, errors.New("etcdserver: request timed out")
	}
	return f.Dir.Live(ctx)
}

func (f *flaky) Watch(ctx context.Context, changed func()) error {
	changed() // another replica committed
	<-ctx.Done()
	return nil
}

// A reload that failed (not refused: the store did not answer) is tried again: the replica
// does not stay on the old version until the next change.
func TestFailedReloadIsRetried(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "orders.yaml"), shopSpec("orders", "/orders/{id}"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := specstore.OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := &flaky{Dir: d}
	s, err := New(Options{Store: st, SpecDir: dir, Gateway: config.Default(), Debounce: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil || s.Revision() != 1 {
		t.Fatal(err)
	}
	files, _ := d.Files(context.Background(), 1)
	files["catalog.yaml"] = shopSpec("catalog", "/products")
	if _, err := d.Commit(context.Background(), files, specstore.Meta{}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() { _ = s.watch(ctx) }()
	for s.Revision() != 2 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Revision() != 2 {
		t.Errorf("3 s after one failed read the replica serves version %d, the store 2", s.Revision())
	}
}

// When the live version does not load here (another replica, on a newer binary, accepted it),
// a change of some files is refused: built on the last version that loads here, it would undo
// the live one's other changes. A whole set (--sync) is taken.
func TestChangeOverALiveVersionThatDoesNotLoad(t *testing.T) {
	ctx := context.Background()
	s, _ := newShop(t)
	files1, _ := s.store.Files(ctx, 1)
	rev2 := map[string][]byte{
		"orders.yaml":  files1["orders.yaml"],
		"catalog.yaml": shopSpec("catalog", "/products", "/reviews", "/wishlist"),
		"future.yaml":  []byte("openapi: 3.1.0\ninfo: {title: future, version: '1'}\nx-specgate: {newKnob: true}\npaths: {}\n"),
	}
	if _, err := s.store.Commit(ctx, rev2, specstore.Meta{Reason: "another replica"}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload("watch"); err == nil {
		t.Fatal("want version 2 refused here")
	}
	two := int64(2)
	_, err := s.Apply(ctx, ChangeSet{Specs: []SpecFile{{Content: shopSpec("payments", "/payments")}}, IfVersion: &two, AllowRisky: true})
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Reason, "live version 2 does not load on this control plane") {
		t.Fatalf("a one-file change over version 2: %v, want refused", err)
	}
	whole := maps.Clone(rev2)
	delete(whole, "future.yaml")
	if res, err := s.Apply(ctx, syncOf(whole)); err != nil || res.Revision != 3 {
		t.Fatalf("a whole set: %+v %v", res, err)
	}
}

// A rollback with --if-version N returns to the version before N, even when this replica has
// not heard of N yet.
func TestRollbackIsRelativeToIfVersion(t *testing.T) {
	ctx := context.Background()
	s, _ := newShop(t)
	if _, err := s.Apply(ctx, ChangeSet{Specs: []SpecFile{{Content: shopSpec("payments", "/payments")}}, AllowRisky: true}); err != nil {
		t.Fatal(err)
	}
	files3, _ := s.store.Files(ctx, 2)
	files3["shipping.yaml"] = shopSpec("shipping", "/shipping")
	if _, err := s.store.Commit(ctx, files3, specstore.Meta{}, 2); err != nil { // another replica
		t.Fatal(err)
	}
	three := int64(3)
	if _, err := s.Rollback(ctx, 0, ChangeSet{IfVersion: &three, AllowRisky: true}); err != nil {
		t.Fatal(err)
	}
	if hist, _ := s.History(ctx); hist[0].Reason != "rollback to 2" {
		t.Errorf("rollback --if-version 3: %q, want rollback to 2", hist[0].Reason)
	}
}

// editDuringBuild saves a file right after the control plane read the directory.
type editDuringBuild struct {
	*specstore.Dir
	hook func()
}

func (e *editDuringBuild) Live(ctx context.Context) (specstore.Revision, map[string][]byte, error) {
	r, f, err := e.Dir.Live(ctx)
	if h := e.hook; h != nil {
		e.hook = nil
		h()
	}
	return r, f, err
}

// Recording an edit made in the directory never rewrites the files: one saved while the
// previous edit compiled stays, and the next reload records it.
func TestRecordingAnEditKeepsANewerOne(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string][]byte{"orders.yaml": shopSpec("orders", "/orders/{id}"), "catalog.yaml": shopSpec("catalog", "/products")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := specstore.OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := &editDuringBuild{Dir: d}
	s, err := New(Options{Store: st, SpecDir: dir, Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil || s.Revision() != 1 {
		t.Fatal(err, s.Revision())
	}
	if err := os.WriteFile(filepath.Join(dir, "catalog.yaml"), shopSpec("catalog", "/products", "/reviews"), 0o644); err != nil {
		t.Fatal(err)
	}
	st.hook = func() {
		_ = os.WriteFile(filepath.Join(dir, "payments.yaml"), shopSpec("payments", "/payments"), 0o644)
	}
	if _, err := s.Reload("watch"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "payments.yaml")); err != nil {
		t.Fatal("payments.yaml, saved while the previous edit compiled, was removed")
	}
	if _, err := s.Reload("watch"); err != nil || s.current.Load().service("payments") == nil || s.Revision() != 2 {
		t.Fatalf("the next reload: %v, version %d, payments served %t", err, s.Revision(), s.current.Load().service("payments") != nil)
	}
}
