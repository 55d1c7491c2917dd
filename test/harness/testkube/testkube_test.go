package testkube_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/specgate/specgate/test/harness/testkube"
	"github.com/specgate/specgate/test/harness/testutil"
)

func TestMain(m *testing.M) { testkube.Main(m) }

// whoami is the user and groups the apiserver authenticates cs as.
func whoami(t *testing.T, cs kubernetes.Interface) (string, []string) {
	t.Helper()
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	return r.Status.UserInfo.Username, r.Status.UserInfo.Groups
}

func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	bin := testutil.Tool(t, "KUBECTL", "kube/kubectl", "kubectl", "kube")
	out, err := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// A cluster of its own: a ConfigMap is stored and read back, through the clientset, a
// client from the kubeconfig file and kubectl.
func TestStartConfigMap(t *testing.T) {
	c := testkube.Start(t) // logs how long it took
	ctx := context.Background()
	cs := c.Client(t)

	if user, groups := whoami(t, cs); user != testkube.AdminUser || !slices.Contains(groups, "system:masters") {
		t.Fatalf("admin is %q in %v, want %q in system:masters", user, groups, testkube.AdminUser)
	}
	ns := c.Namespace(t)
	if !strings.HasPrefix(ns, "teststartconfigmap-") {
		t.Errorf("namespace %q not named after the test", ns)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "routes"}, Data: map[string]string{"upstream": "http://127.0.0.1:9"}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	fromFile, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kubernetes.NewForConfigOrDie(fromFile).CoreV1().ConfigMaps(ns).Get(ctx, "routes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["upstream"] != "http://127.0.0.1:9" {
		t.Fatalf("read back %v", got.Data)
	}
	out, err := kubectl(t, c.Kubeconfig, "get", "configmap", "routes", "-n", ns, "-o", "jsonpath={.data.upstream}")
	if err != nil || out != "http://127.0.0.1:9" {
		t.Fatalf("kubectl get: %v: %s", err, out)
	}
}

// A User is refused until a RoleBinding grants it access, then allowed exactly that.
func TestSharedUserRBAC(t *testing.T) {
	c := testkube.Shared(t)
	ctx := context.Background()
	admin := c.Client(t)
	ns := c.Namespace(t)
	if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "routes"}, Data: map[string]string{"a": "b"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg, kubeconfig := c.User(t, "alice")
	alice := kubernetes.NewForConfigOrDie(cfg)
	if user, groups := whoami(t, alice); user != "alice" || !slices.Equal(groups, []string{"system:authenticated"}) {
		t.Fatalf("user is %q in %v, want alice in [system:authenticated]", user, groups)
	}
	if _, err := alice.CoreV1().ConfigMaps(ns).Get(ctx, "routes", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("get before the binding: %v, want Forbidden", err)
	}
	if out, err := kubectl(t, kubeconfig, "get", "configmap", "routes", "-n", ns); err == nil || !strings.Contains(out, "forbidden") {
		t.Fatalf("kubectl get before the binding: %v: %s", err, out)
	}

	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-reads"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-configmaps"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings from an informer: the grant shows within moments.
	var err error
	testutil.Eventually(t, 10*time.Second, "alice allowed to get the configmap", func() bool {
		_, err = alice.CoreV1().ConfigMaps(ns).Get(ctx, "routes", metav1.GetOptions{})
		return err == nil
	})
	if out, err := kubectl(t, kubeconfig, "get", "configmap", "routes", "-n", ns, "-o", "jsonpath={.data.a}"); err != nil || out != "b" {
		t.Fatalf("kubectl get after the binding: %v: %s", err, out)
	}
	if err := alice.CoreV1().ConfigMaps(ns).Delete(ctx, "routes", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("delete (not granted): %v, want Forbidden", err)
	}
	if _, err := alice.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list in another namespace: %v, want Forbidden", err)
	}
}

// Parallel tests share one cluster, each in its own namespace.
func TestSharedParallel(t *testing.T) {
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := testkube.Shared(t)
			if c != testkube.Shared(t) {
				t.Fatal("Shared started a second cluster")
			}
			ns := c.Namespace(t)
			if _, err := c.Client(t).CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// A pod is admitted: the namespace has its default service account.
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}},
			}}
			if _, err := c.Client(t).CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
