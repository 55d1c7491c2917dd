package xds

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/specgen"
	"github.com/specgate/specgate/xds/specstore"
)

// shopSpec is a service at the gateway's root with a backend of the cluster (specgen.Root).
func shopSpec(name string, paths ...string) []byte {
	return specgen.Root(name, "http://"+name+".shop.svc.cluster.local:8080", paths...)
}

func newShop(t *testing.T) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	for name, b := range map[string][]byte{"orders.yaml": shopSpec("orders", "/orders/{id}"), "catalog.yaml": shopSpec("catalog", "/products", "/reviews")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Options{SpecDir: dir, Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 1 {
		t.Fatalf("the directory's files are revision %d, want 1", s.Revision())
	}
	return s, dir
}

func lines(changes []compiler.Change) string {
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return strings.Join(out, "\n")
}

func syncOf(files map[string][]byte) ChangeSet {
	cs := ChangeSet{Sync: true, AllowRisky: true}
	for name, b := range files {
		cs.Specs = append(cs.Specs, SpecFile{Name: name, Content: b})
	}
	return cs
}

// One sync renames a service, moves an operation to it and removes another file: the set
// that results is compiled whole (pushed one file at a time, the rename would collide with
// orders' paths), the diff names the moves, and the directory holds exactly the new set.
func TestSyncRenamesMovesAndDeletes(t *testing.T) {
	ctx := context.Background()
	s, dir := newShop(t)
	next := map[string][]byte{
		"orders-v2.yaml": shopSpec("orders-v2", "/orders/{id}", "/reviews"),
		"catalog.yaml":   shopSpec("catalog", "/products"),
	}
	dry := syncOf(next)
	dry.DryRun = true
	res, err := s.Apply(ctx, dry)
	if err != nil || res.Applied || res.LiveRevision != 1 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	diff := lines(res.Changes)
	for _, want := range []string{
		"  orders: service removed (1 routes)",
		"! orders-v2 GET /orders/{id}: route moved from orders",
		"! orders-v2 GET /reviews: route moved from catalog",
		"  catalog GET /reviews: route removed",
	} {
		if !strings.Contains(diff, want) {
			t.Errorf("dry run diff lacks %q:\n%s", want, diff)
		}
	}
	if s.Revision() != 1 {
		t.Fatal("a dry run changed the live revision")
	}
	res, err = s.Apply(ctx, syncOf(next))
	if err != nil || !res.Applied || res.Revision != 2 {
		t.Fatalf("sync: %+v %v", res, err)
	}
	files, _ := compiler.ReadDir(dir)
	if !slices.Equal(slices.Sorted(maps.Keys(files)), []string{"catalog.yaml", "orders-v2.yaml"}) {
		t.Errorf("directory after the sync: %v", slices.Sorted(maps.Keys(files)))
	}
	// Removing a service and the same set again.
	delete(next, "orders-v2.yaml")
	if res, err := s.Apply(ctx, syncOf(next)); err != nil || res.Revision != 3 || !strings.Contains(lines(res.Changes), "orders-v2: service removed") {
		t.Fatalf("delete by sync: %+v %v", res, err)
	}
	if res, err := s.Apply(ctx, syncOf(next)); err != nil || !res.Unchanged || res.Revision != 3 {
		t.Fatalf("the same set again: %+v %v, want unchanged at 3", res, err)
	}
}

// A change set that does not compile changes nothing: not the store, not the directory, not
// what is served.
func TestRefusedChangeSetChangesNothing(t *testing.T) {
	s, dir := newShop(t)
	before, _ := compiler.ReadDir(dir)
	version := s.Version()
	// orders-v2 claims /orders/{id} while orders still does: ambiguous, refused.
	_, err := s.Apply(context.Background(), ChangeSet{Specs: []SpecFile{{Name: "v2.yaml", Content: shopSpec("orders-v2", "/orders/{id}")}}, AllowRisky: true})
	var refused *RefusedError
	if !errors.As(err, &refused) || len(refused.Lines) == 0 {
		t.Fatalf("a colliding service: %v, want refused with lint lines", err)
	}
	after, _ := compiler.ReadDir(dir)
	if s.Version() != version || s.Revision() != 1 || len(after) != len(before) {
		t.Fatal("a refused change set changed something")
	}
	// The same file with orders deleted in the same change set is fine.
	res, err := s.Apply(context.Background(), ChangeSet{Specs: []SpecFile{{Name: "v2.yaml", Content: shopSpec("orders-v2", "/orders/{id}")}}, Delete: []string{"orders"}, AllowRisky: true})
	if err != nil || res.Revision != 2 {
		t.Fatalf("rename as add + delete: %+v %v", res, err)
	}
}

// Two changes reviewed against the same live version: one is applied, the other gets a
// conflict, and what is live is exactly the one that won.
func TestConcurrentChangesOneConflicts(t *testing.T) {
	s, _ := newShop(t)
	live := s.Revision()
	var (
		wg       sync.WaitGroup
		applied  = make(chan string, 2)
		conflict = make(chan error, 2)
	)
	for _, name := range []string{"alpha", "beta"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Apply(context.Background(), ChangeSet{Specs: []SpecFile{{Content: shopSpec(name, "/"+name)}}, IfVersion: &live, AllowRisky: true})
			var c *specstore.ConflictError
			switch {
			case err == nil:
				applied <- name
			case errors.As(err, &c):
				conflict <- err
			default:
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	if len(applied) != 1 || len(conflict) != 1 {
		t.Fatalf("applied %d, conflicts %d: want one each", len(applied), len(conflict))
	}
	winner, loser := <-applied, "alpha"
	if winner == "alpha" {
		loser = "beta"
	}
	st := s.current.Load()
	if st.service(winner) == nil || st.service(loser) != nil || s.Revision() != live+1 {
		t.Fatalf("live: revision %d, %s served %t, %s served %t", s.Revision(), winner, st.service(winner) != nil, loser, st.service(loser) != nil)
	}
}

// Rollback returns to the previous set (or a named one) as a new revision; history records
// who, why and what, newest first.
func TestRollbackAndHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := newShop(t)
	v1 := s.Version()
	cs := ChangeSet{Specs: []SpecFile{{Content: shopSpec("payments", "/payments")}}, AllowRisky: true, Reason: "add payments", Author: "ci"}
	if _, err := s.Apply(ctx, cs); err != nil {
		t.Fatal(err)
	}
	res, err := s.Rollback(ctx, 0, ChangeSet{Reason: "payments is broken"})
	if err != nil || !res.Applied || res.Revision != 3 || s.Version() != v1 {
		t.Fatalf("rollback: %+v %v (config %s, want %s)", res, err, s.Version(), v1)
	}
	if !strings.Contains(lines(res.Changes), "payments: service removed") {
		t.Errorf("rollback diff: %s", lines(res.Changes))
	}
	// Back to 2: it adds payments again, a widening change, refused without AllowRisky.
	var refused *RefusedError
	if _, err := s.Rollback(ctx, 2, ChangeSet{}); !errors.As(err, &refused) {
		t.Fatalf("rollback that widens access without AllowRisky: %v", err)
	}
	if _, err := s.Rollback(ctx, 9, ChangeSet{}); !errors.Is(err, specstore.ErrUnknownRevision) {
		t.Fatalf("rollback to an unknown revision: %v", err)
	}
	hist, err := s.History(ctx)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if h := hist[0]; h.Number != 3 || h.Reason != "rollback to 1: payments is broken" || !strings.Contains(h.Summary, "removed payments") {
		t.Errorf("newest entry: %+v", h)
	}
	if h := hist[1]; h.Author != "ci" || h.Reason != "add payments" || !strings.Contains(h.Summary, "added payments") {
		t.Errorf("entry 2: %+v", h)
	}
}
