package specstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/specgate/specgate/test/harness/testkube"
)

func TestMain(m *testing.M) { testkube.Main(m) }

// newKube is a store in a fresh namespace of the shared API server, as one replica sees it.
func newKube(t *testing.T, ns string, keep int) *Kube {
	t.Helper()
	k, err := NewKube(testkube.Shared(t).Client(t), KubeOptions{Namespace: ns, Keep: keep, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// incompressible is n bytes that gzip cannot shrink: a file that needs several objects.
func incompressible(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Two replicas share the store through the API server: what one commits, the other reads
// back byte for byte, however large (a 2.5 MB file that does not compress takes 4 objects);
// a stale writer gets a conflict; old sets stay readable.
func TestKubeCommitShareConflict(t *testing.T) {
	ctx := context.Background()
	ns := testkube.Shared(t).Namespace(t)
	a, b := newKube(t, ns, 0), newKube(t, ns, 0)
	if rev, files, err := a.Live(ctx); err != nil || rev.Number != 0 || len(files) != 0 {
		t.Fatalf("empty store: %+v %v %v", rev, files, err)
	}
	big := incompressible(5*ChunkBytes/2 + 1)
	first := map[string][]byte{"orders.yaml": []byte("orders: 1"), "huge.json": big}
	r1, err := a.Commit(ctx, first, Meta{Reason: "first", Author: "ci"}, 0)
	if err != nil || r1.Number != 1 || r1.Bytes != int64(len(big)+9) {
		t.Fatalf("commit: %+v %v", r1, err)
	}
	chunks, err := testkube.Shared(t).Client(t).CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: labelStore + "=blob"})
	if err != nil || len(chunks.Items) != 4 {
		t.Fatalf("objects holding the blobs: %d %v, want 3 for the big file and 1 for the small", len(chunks.Items), err)
	}
	rev, files, err := b.Live(ctx)
	if err != nil || rev.Number != 1 || rev.Author != "ci" || !equalFiles(files, first) {
		t.Fatalf("the other replica reads: %+v %v", rev, err)
	}
	second := map[string][]byte{"orders.yaml": []byte("orders: 2")}
	if _, err := b.Commit(ctx, second, Meta{}, 1); err != nil {
		t.Fatal(err)
	}
	var conflict *ConflictError
	if _, err := a.Commit(ctx, map[string][]byte{"x.yaml": nil}, Meta{}, 1); !errors.As(err, &conflict) || conflict.Live != 2 {
		t.Fatalf("a commit expecting 1 after 2 went live: %v", err)
	}
	old, err := a.Files(ctx, 1)
	if err != nil || !equalFiles(old, first) {
		t.Fatalf("revision 1's files: %v", err)
	}
	hist, err := a.History(ctx)
	if err != nil || len(hist) != 2 || hist[0].Number != 2 || hist[1].Reason != "first" {
		t.Fatalf("history: %+v %v", hist, err)
	}
}

// Writers racing with the same expected revision: exactly one wins, every other gets a
// conflict, and the live set is the winner's whole set.
func TestKubeRacingCommits(t *testing.T) {
	ctx := context.Background()
	ns := testkube.Shared(t).Namespace(t)
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set := map[string][]byte{"a.yaml": {byte('0' + i)}, "b.yaml": {byte('0' + i)}}
			_, results[i] = newKube(t, ns, 0).Commit(ctx, set, Meta{}, 0)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range results {
		var conflict *ConflictError
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both won", won, i)
		case err == nil:
			won = i
		case !errors.As(err, &conflict):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	rev, files, err := newKube(t, ns, 0).Live(ctx)
	if err != nil || won < 0 || rev.Number != 1 || files["a.yaml"][0] != byte('0'+won) || files["b.yaml"][0] != byte('0'+won) {
		t.Fatalf("live after the race: %+v %q %v (winner %d)", rev, files, err, won)
	}
}

// A replica's watch hears of another's commit within a second; the history is bounded and
// the content only the pruned revisions named is deleted (after the grace time).
func TestKubeWatchAndPrune(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := testkube.Shared(t).Namespace(t)
	writer, watcher := newKube(t, ns, 2), newKube(t, ns, 2)
	writer.blobGraceTime = 0
	heard := make(chan struct{}, 16)
	go func() { _ = watcher.Watch(ctx, func() { heard <- struct{}{} }) }()
	for n := range int64(4) {
		start := time.Now()
		if _, err := writer.Commit(ctx, map[string][]byte{"a.yaml": {byte('a' + n)}}, Meta{}, n); err != nil {
			t.Fatal(err)
		}
		select {
		case <-heard:
			t.Logf("revision %d heard after %s", n+1, time.Since(start).Round(time.Millisecond))
		case <-time.After(time.Second):
			t.Fatalf("the watch did not report revision %d within 1s", n+1)
		}
		for len(heard) > 0 {
			<-heard
		}
	}
	hist, err := writer.History(ctx)
	if err != nil || len(hist) != 2 || hist[1].Number != 3 {
		t.Fatalf("history, keep 2: %+v %v", hist, err)
	}
	_, err = testkube.Shared(t).Client(t).CoreV1().ConfigMaps(ns).Get(ctx, writer.blobName(Digest([]byte{'a'}), 0), metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the content of pruned revision 1: %v, want deleted", err)
	}
	if _, err := writer.Files(ctx, 1); !errors.Is(err, ErrUnknownRevision) {
		t.Fatalf("pruned revision: %v", err)
	}
}

// Content that replica b pruned and replica a commits again (a revert, say) is stored again:
// a replica's memory of what exists is no proof, and the live revision must be loadable by
// every replica.
func TestKubeCommitAfterAnotherReplicaPruned(t *testing.T) {
	ctx := context.Background()
	ns := testkube.Shared(t).Namespace(t)
	a, b := newKube(t, ns, 1), newKube(t, ns, 1)
	a.blobGraceTime, b.blobGraceTime = 0, 0 // as after 15 minutes with the default grace
	x := map[string][]byte{"a.yaml": []byte("content X")}
	y := map[string][]byte{"a.yaml": []byte("content Y")}
	if _, err := a.Commit(ctx, x, Meta{}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx, y, Meta{}, 1); err != nil { // b prunes revision 1 and blob X
		t.Fatal(err)
	}
	if _, err := a.Commit(ctx, x, Meta{}, 2); err != nil { // X again
		t.Fatal(err)
	}
	if _, _, err := a.Live(ctx); err != nil {
		t.Fatalf("a: %v", err)
	}
	if _, _, err := newKube(t, ns, 1).Live(ctx); err != nil {
		t.Fatalf("live revision 3 committed without error, but a fresh replica cannot read it: %v", err)
	}
}

// A replica keeps in memory the content of the live set only, however many revisions it
// loaded (a 13 MB description changed 40 times would otherwise outgrow the pod).
func TestKubeCacheHoldsOneSet(t *testing.T) {
	ctx := context.Background()
	ns := testkube.Shared(t).Namespace(t)
	writer, reader := newKube(t, ns, 2), newKube(t, ns, 2)
	writer.blobGraceTime = 0
	for n := range int64(20) {
		if _, err := writer.Commit(ctx, map[string][]byte{"big.yaml": fmt.Appendf(incompressible(64<<10), "%d", n)}, Meta{}, n); err != nil {
			t.Fatal(err)
		}
		if _, _, err := reader.Live(ctx); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := testkube.Shared(t).Client(t).CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: labelStore + "=blob"})
	reader.mu.Lock()
	n := len(reader.blobs)
	reader.mu.Unlock()
	if n > 2 {
		t.Errorf("reader caches %d blobs; the store holds %d blob objects and keeps 2 revisions", n, len(list.Items))
	}
}

// With the live object deleted by hand, the newest revision record is live: the next commit
// is numbered after the history, never over an older record.
func TestKubeLiveRecordDeletedByHand(t *testing.T) {
	ctx := context.Background()
	ns := testkube.Shared(t).Namespace(t)
	k := newKube(t, ns, 0)
	for n, c := range []string{"old1", "old2"} {
		if _, err := k.Commit(ctx, map[string][]byte{"a.yaml": []byte(c)}, Meta{}, int64(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := testkube.Shared(t).Client(t).CoreV1().ConfigMaps(ns).Delete(ctx, k.liveName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var conflict *ConflictError
	if _, err := k.Commit(ctx, map[string][]byte{"a.yaml": []byte("new")}, Meta{}, 0); !errors.As(err, &conflict) || conflict.Live != 2 {
		t.Fatalf("a commit expecting an empty store: %v, want a conflict naming 2", err)
	}
	r3, err := k.Commit(ctx, map[string][]byte{"a.yaml": []byte("new")}, Meta{}, 2)
	if err != nil || r3.Number != 3 {
		t.Fatalf("commit after 2: %+v %v", r3, err)
	}
	for n, want := range map[int64]string{1: "old1", 2: "old2", 3: "new"} {
		if files, err := k.Files(ctx, n); err != nil || string(files["a.yaml"]) != want {
			t.Errorf("Files(%d) = %q %v, want %q", n, files["a.yaml"], err, want)
		}
	}
}
