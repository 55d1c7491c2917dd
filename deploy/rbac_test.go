package deploy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/specgate/specgate/test/harness/testkube"
	"github.com/specgate/specgate/xds/specstore"
)

// deploy/base's RBAC, applied to a real API server (in a namespace of the test's own): the
// control plane's ServiceAccount can run the spec store (commit, read, watch, prune), and the
// specs pipeline's Role reaches the control plane but writes no object.
func TestRBACOnAPIServer(t *testing.T) {
	ctx := context.Background()
	c := testkube.Shared(t)
	admin := c.Client(t)
	ns := c.Namespace(t)
	o := build(t, "base")
	for _, sa := range o.ServiceAccounts {
		sa.Namespace = ns
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range o.Roles {
		r.Namespace = ns
		if _, err := admin.RbacV1().Roles(ns).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rb := range o.RoleBindings {
		rb.Namespace = ns
		for i := range rb.Subjects {
			if rb.Subjects[i].Kind == rbacv1.ServiceAccountKind {
				rb.Subjects[i].Namespace = ns
			}
		}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The control plane: the user name the API server gives its ServiceAccount's token.
	cfg, _ := c.User(t, "system:serviceaccount:"+ns+":specgate-xds")
	xdsClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The informer's first list can stand in for a missing watch verb: ask the API server.
	for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
		if !allowed(t, xdsClient, ns, verb, "configmaps", "") {
			t.Errorf("the control plane's ServiceAccount may not %s ConfigMaps", verb)
		}
	}
	store, err := specstore.NewKube(xdsClient, specstore.KubeOptions{Namespace: ns, Keep: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	heard := make(chan struct{}, 8)
	go func() { _ = store.Watch(watchCtx, func() { heard <- struct{}{} }) }()
	for n := range int64(2) {
		if _, err := store.Commit(ctx, map[string][]byte{"a.yaml": {byte('a' + n)}}, specstore.Meta{}, n); err != nil {
			t.Fatalf("commit as the control plane's ServiceAccount: %v", err)
		}
	}
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("the ServiceAccount's watch heard nothing")
	}
	if hist, err := store.History(ctx); err != nil || len(hist) != 1 {
		t.Fatalf("history after pruning to 1 (needs list and delete): %d %v", len(hist), err)
	}

	// The pipeline, bound as the gke overlay binds it.
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "specs-pipeline", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "specs-pipeline"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "specs-ci"}}}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ciCfg, _ := c.User(t, "specs-ci")
	ci, err := kubernetes.NewForConfig(ciCfg)
	if err != nil {
		t.Fatal(err)
	}
	can := func(verb, resource, sub string) bool { return allowed(t, ci, ns, verb, resource, sub) }
	if !can("create", "pods", "portforward") || !can("list", "pods", "") {
		t.Error("the pipeline cannot port-forward to the control plane")
	}
	for _, verb := range []string{"create", "update", "delete"} {
		if can(verb, "configmaps", "") {
			t.Errorf("the pipeline may %s ConfigMaps: it must go through the change API", verb)
		}
	}
	_, err = ci.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "specgate-specs-live"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the pipeline writing the store's live record: %v, want Forbidden", err)
	}
}

// allowed asks the API server whether client's identity may do verb on resource in ns.
func allowed(t *testing.T, client kubernetes.Interface, ns, verb, resource, sub string) bool {
	t.Helper()
	r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource, Subresource: sub}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}
