package specstore

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Kube is a Store on Kubernetes ConfigMaps in one namespace, shared by every control-plane
// replica through the API server:
//
//	PREFIX-live             the live revision's record (mutable; each commit is one update
//	                        of it, conditional on its resourceVersion)
//	PREFIX-r<N>             the record of revision N (immutable), for history and rollback
//	PREFIX-b-<sha256>-<i>   chunk i of a file's gzipped content (immutable)
//
// A content object holds at most ChunkBytes, well under the API server's 1 MiB per object, so
// no fleet and no single description is too large: GitHub's 13 MB description gzips to about
// 1 MB, two chunks. Replicas watch PREFIX-live (an informer) and read the blobs they lack.
type Kube struct {
	client     kubernetes.Interface
	ns, prefix string
	keep       int
	log        *slog.Logger
	mu         sync.Mutex
	// blobs is the content of the live revision last read or written, by digest: the next
	// revision fetches only what changed. Bounded by one set.
	blobs         map[string][]byte
	blobGraceTime time.Duration
}

// KubeOptions configure a Kube store.
type KubeOptions struct {
	Namespace string
	Prefix    string // object name prefix (default "specgate-specs")
	Keep      int    // revisions kept (default DefaultKeep)
	Logger    *slog.Logger
}

// ChunkBytes bounds the compressed bytes of one content object.
const ChunkBytes = 768 << 10

const (
	labelStore    = "specgate.dev/spec-store"
	labelRevision = "specgate.dev/revision"
	annotChunks   = "specgate.dev/chunks"
	annotDigest   = "specgate.dev/digest"
	annotUsed     = "specgate.dev/used-at" // a commit named this content again: restart its grace
	recordKey     = "revision.json"
	// blobGrace keeps an unreferenced blob this long after it was created or last named by a
	// commit: it may belong to a commit in flight on another replica, stored but not live yet.
	blobGrace = 15 * time.Minute
)

// NewKube returns a store in o.Namespace through client.
func NewKube(client kubernetes.Interface, o KubeOptions) (*Kube, error) {
	if o.Namespace == "" {
		return nil, errors.New("spec store: no namespace")
	}
	if o.Prefix == "" {
		o.Prefix = "specgate-specs"
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Kube{client: client, ns: o.Namespace, prefix: o.Prefix, keep: o.Keep, log: o.Logger,
		blobs: map[string][]byte{}, blobGraceTime: blobGrace}, nil
}

func (k *Kube) cms() corev1client.ConfigMapInterface { return k.client.CoreV1().ConfigMaps(k.ns) }

func (k *Kube) liveName() string            { return k.prefix + "-live" }
func (k *Kube) revisionName(n int64) string { return k.prefix + "-r" + strconv.FormatInt(n, 10) }
func (k *Kube) blobName(sum string, i int) string {
	return k.prefix + "-b-" + sum + "-" + strconv.Itoa(i)
}

// live reads the live record and the object's resourceVersion ("" when there is none yet).
// Without a live object, the newest revision record is live: the object was deleted by hand,
// and numbering must go on from the history, not restart at 1 over older records.
func (k *Kube) live(ctx context.Context) (Revision, string, error) {
	cm, err := k.cms().Get(ctx, k.liveName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		revs, err := k.revisions(ctx)
		if err != nil || len(revs) == 0 {
			return Revision{}, "", err
		}
		return revs[0], "", nil
	}
	if err != nil {
		return Revision{}, "", fmt.Errorf("spec store: read %s/%s: %w", k.ns, k.liveName(), err)
	}
	r, err := parseRecord(cm)
	return r, cm.ResourceVersion, err
}

func parseRecord(cm *corev1.ConfigMap) (Revision, error) {
	var r Revision
	if err := json.Unmarshal([]byte(cm.Data[recordKey]), &r); err != nil {
		return Revision{}, fmt.Errorf("spec store: %s/%s: %s: %w", cm.Namespace, cm.Name, recordKey, err)
	}
	if err := r.check(); err != nil {
		return Revision{}, fmt.Errorf("spec store: %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return r, nil
}

func (k *Kube) Live(ctx context.Context) (Revision, map[string][]byte, error) {
	r, _, err := k.live(ctx)
	if err != nil || r.Number == 0 {
		return Revision{}, nil, err
	}
	files, err := k.files(ctx, r)
	if err == nil {
		k.keepOnly(r, files)
	}
	return r, files, err
}

// keepOnly makes the blob cache the content of r.
func (k *Kube) keepOnly(r Revision, files map[string][]byte) {
	cache := make(map[string][]byte, len(files))
	for name, sum := range r.Files {
		cache[sum] = files[name]
	}
	k.mu.Lock()
	k.blobs = cache
	k.mu.Unlock()
}

// files reads a revision's files, fetching the blobs this replica does not hold yet.
func (k *Kube) files(ctx context.Context, r Revision) (map[string][]byte, error) {
	out := make(map[string][]byte, len(r.Files))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for name, sum := range r.Files {
		g.Go(func() error {
			b, err := k.blob(gctx, sum)
			if err != nil {
				return fmt.Errorf("spec store: revision %d: %s: %w", r.Number, name, err)
			}
			mu.Lock()
			out[name] = b
			mu.Unlock()
			return nil
		})
	}
	return out, g.Wait()
}

func (k *Kube) blob(ctx context.Context, sum string) ([]byte, error) {
	k.mu.Lock()
	b, ok := k.blobs[sum]
	k.mu.Unlock()
	if ok {
		return b, nil
	}
	first, err := k.cms().Get(ctx, k.blobName(sum, 0), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(first.Annotations[annotChunks])
	if err != nil || n < 1 {
		return nil, fmt.Errorf("%s: bad %s annotation", first.Name, annotChunks)
	}
	var gz bytes.Buffer
	gz.Write(first.BinaryData["data"])
	for i := 1; i < n; i++ {
		cm, err := k.cms().Get(ctx, k.blobName(sum, i), metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		gz.Write(cm.BinaryData["data"])
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", first.Name, err)
	}
	b, err = io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", first.Name, err)
	}
	if Digest(b) != sum {
		return nil, fmt.Errorf("%s: content does not match its digest", first.Name)
	}
	return b, nil
}

// putBlob stores content under its digest, in chunks. Content is immutable, so an object that
// exists already holds the same bytes; naming it again restarts its grace (prune).
func (k *Kube) putBlob(ctx context.Context, sum string, b []byte) error {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	z := gz.Bytes()
	chunks := max(1, (len(z)+ChunkBytes-1)/ChunkBytes)
	// The chunks after the first are written first: a reader finds the first one only when
	// the whole blob is there.
	for i := chunks - 1; i >= 0; i-- {
		part := z[i*ChunkBytes : min(len(z), (i+1)*ChunkBytes)]
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: k.blobName(sum, i), Labels: map[string]string{labelStore: "blob"},
				Annotations: map[string]string{annotChunks: strconv.Itoa(chunks), annotDigest: sum}},
			Immutable:  ptr(true),
			BinaryData: map[string][]byte{"data": part},
		}
		_, err := k.cms().Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && i == 0 {
			err = k.touch(ctx, cm.Name)
		} else if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("spec store: create %s/%s: %w", k.ns, cm.Name, err)
		}
	}
	return nil
}

// touch marks a blob as named by a commit now (its metadata may change; its data may not).
func (k *Kube) touch(ctx context.Context, name string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, annotUsed, time.Now().UTC().Format(time.RFC3339))
	_, err := k.cms().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }

func (k *Kube) recordObject(name string, r Revision, immutable bool) (*corev1.ConfigMap, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{labelStore: "revision", labelRevision: strconv.FormatInt(r.Number, 10)}},
		Data:       map[string]string{recordKey: string(b)},
	}
	if immutable {
		cm.Immutable = ptr(true)
	} else {
		cm.Labels[labelStore] = "live"
	}
	return cm, nil
}

func (k *Kube) Commit(ctx context.Context, files map[string][]byte, meta Meta, expect int64) (Revision, error) {
	if err := checkNames(files); err != nil {
		return Revision{}, err
	}
	cur, rv, err := k.live(ctx)
	if err != nil {
		return Revision{}, err
	}
	if cur.Number != expect {
		return Revision{}, &ConflictError{Expected: expect, Live: cur.Number}
	}
	rev := newRevision(expect+1, files, meta, time.Now())
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	seen := map[string]bool{}
	for _, sum := range cur.Files {
		seen[sum] = true // the live revision's content: stored, and kept while it is live
	}
	for name, sum := range rev.Files {
		if !seen[sum] {
			seen[sum] = true
			g.Go(func() error { return k.putBlob(gctx, sum, files[name]) })
		}
	}
	if err := g.Wait(); err != nil {
		return Revision{}, err
	}
	if cur.Number > 0 {
		k.record(ctx, cur) // in case the replica that made it died before recording it
	}
	live, err := k.recordObject(k.liveName(), rev, false)
	if err != nil {
		return Revision{}, err
	}
	// The commit point: one write of one object, refused if anyone wrote it since we read it.
	if rv == "" {
		_, err = k.cms().Create(ctx, live, metav1.CreateOptions{})
	} else {
		live.ResourceVersion = rv
		_, err = k.cms().Update(ctx, live, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		now, _, rerr := k.live(ctx)
		if rerr != nil {
			return Revision{}, rerr
		}
		return Revision{}, &ConflictError{Expected: expect, Live: now.Number}
	}
	if err != nil {
		return Revision{}, fmt.Errorf("spec store: update %s/%s: %w", k.ns, k.liveName(), err)
	}
	k.record(ctx, rev)
	k.keepOnly(rev, files)
	k.prune(ctx)
	return rev, nil
}

// record writes the immutable history object of r, if it is missing. A failure is logged:
// r is live already, and the next commit records it again.
func (k *Kube) record(ctx context.Context, r Revision) {
	cm, err := k.recordObject(k.revisionName(r.Number), r, true)
	if err == nil {
		_, err = k.cms().Create(ctx, cm, metav1.CreateOptions{})
	}
	if apierrors.IsAlreadyExists(err) {
		if old, gerr := k.cms().Get(ctx, k.revisionName(r.Number), metav1.GetOptions{}); gerr == nil {
			if prev, perr := parseRecord(old); perr == nil && prev.Digest != r.Digest {
				k.log.Error("spec store: the history already holds another revision under this number", "revision", r.Number, "object", old.Name)
			}
		}
		return
	}
	if err != nil {
		k.log.Warn("spec store: history record not written; the next commit retries", "revision", r.Number, "err", err)
	}
}

// revisions lists the history objects, newest first.
func (k *Kube) revisions(ctx context.Context) ([]Revision, error) {
	list, err := k.cms().List(ctx, metav1.ListOptions{LabelSelector: labelStore + "=revision"})
	if err != nil {
		return nil, fmt.Errorf("spec store: list revisions in %s: %w", k.ns, err)
	}
	out := make([]Revision, 0, len(list.Items))
	for i := range list.Items {
		r, err := parseRecord(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Revision) int { return cmp.Compare(b.Number, a.Number) })
	return out, nil
}

// prune deletes the history past keep and the blobs that neither the live revision (read
// again now: another replica may have committed since) nor a kept revision names, once their
// grace has passed. Best effort: what it leaves, the next commit deletes.
func (k *Kube) prune(ctx context.Context) {
	live, _, err := k.live(ctx)
	if err != nil {
		k.log.Warn("spec store: prune", "err", err)
		return
	}
	revs, err := k.revisions(ctx)
	if err != nil {
		k.log.Warn("spec store: prune", "err", err)
		return
	}
	used := map[string]bool{}
	for _, sum := range live.Files {
		used[sum] = true
	}
	for i, r := range revs {
		if i >= k.keep && r.Number != live.Number {
			if err := k.cms().Delete(ctx, k.revisionName(r.Number), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				k.log.Warn("spec store: prune", "err", err)
			}
			continue
		}
		for _, sum := range r.Files {
			used[sum] = true
		}
	}
	blobs, err := k.client.CoreV1().ConfigMaps(k.ns).List(ctx, metav1.ListOptions{LabelSelector: labelStore + "=blob"})
	if err != nil {
		k.log.Warn("spec store: prune", "err", err)
		return
	}
	// A blob's chunks share its first chunk's grace: chunk 0 is the one a commit touches.
	fresh := map[string]bool{}
	for _, cm := range blobs.Items {
		last := cm.CreationTimestamp.Time
		if t, err := time.Parse(time.RFC3339, cm.Annotations[annotUsed]); err == nil && t.After(last) {
			last = t
		}
		if time.Since(last) < k.blobGraceTime {
			fresh[cm.Annotations[annotDigest]] = true
		}
	}
	for _, cm := range blobs.Items {
		sum := cm.Annotations[annotDigest]
		if used[sum] || fresh[sum] {
			continue
		}
		if err := k.cms().Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			k.log.Warn("spec store: prune", "err", err)
		}
	}
}

func (k *Kube) History(ctx context.Context) ([]Revision, error) {
	revs, err := k.revisions(ctx)
	if err != nil {
		return nil, err
	}
	live, _, err := k.live(ctx)
	if err != nil {
		return nil, err
	}
	if live.Number > 0 && (len(revs) == 0 || revs[0].Number < live.Number) {
		revs = append([]Revision{live}, revs...) // live, its record not written yet
	}
	return revs, nil
}

func (k *Kube) Files(ctx context.Context, n int64) (map[string][]byte, error) {
	cm, err := k.cms().Get(ctx, k.revisionName(n), metav1.GetOptions{})
	var r Revision
	switch {
	case apierrors.IsNotFound(err):
		if r, _, err = k.live(ctx); err != nil {
			return nil, err
		}
		if r.Number != n || n == 0 {
			return nil, ErrUnknownRevision
		}
	case err != nil:
		return nil, fmt.Errorf("spec store: read %s/%s: %w", k.ns, k.revisionName(n), err)
	default:
		if r, err = parseRecord(cm); err != nil {
			return nil, err
		}
	}
	return k.files(ctx, r)
}

// Watch follows the live object through an informer: it lists, then watches, and lists again
// after a broken watch, so no change is missed.
func (k *Kube) Watch(ctx context.Context, changed func()) error {
	f := informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithNamespace(k.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + k.liveName() }))
	inf := f.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	return nil
}
