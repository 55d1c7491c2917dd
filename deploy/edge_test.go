package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/specgate/specgate/test/harness/testkube"
	"github.com/specgate/specgate/test/harness/testutil"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// The gke overlays, GKE edge included, against a real kube-apiserver that has the Gateway API
// CRDs of the Go module sigs.k8s.io/gateway-api and this repository's minimal schemas of GKE's
// policy kinds (testdata/gke-crds): every object passes a strict server-side dry run (schemas,
// CEL rules, no unknown field), and objects those rules refuse are refused.
func TestGKEEdgeOnAPIServer(t *testing.T) {
	ctx := context.Background()
	c := testkube.Shared(t)
	ns := c.Namespace(t)
	cfg := c.Config
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("go list sigs.k8s.io/gateway-api: %v", err)
	}
	gatewayAPI := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	for _, f := range []string{
		filepath.Join(gatewayAPI, "gateway.networking.k8s.io_gatewayclasses.yaml"),
		filepath.Join(gatewayAPI, "gateway.networking.k8s.io_gateways.yaml"),
		filepath.Join(gatewayAPI, "gateway.networking.k8s.io_httproutes.yaml"),
		filepath.Join("testdata", "gke-crds", "healthcheckpolicies.yaml"),
		filepath.Join("testdata", "gke-crds", "gcpbackendpolicies.yaml"),
	} {
		installCRD(t, dyn, f)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	dryRun := func(obj *unstructured.Unstructured) error {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		obj.SetNamespace(ns)
		_, err = dyn.Resource(m.Resource).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		return err
	}

	for _, dir := range []string{"overlays/gke", "overlays/gke-cluster"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeObjects(t, dir)
			kinds := map[string]int{}
			for _, obj := range objs {
				switch obj.GetKind() {
				case "Namespace": // the test's own namespace stands in for it
					continue
				case "PodMonitoring": // Managed Prometheus: its CRD is not in a registry here either
					continue
				}
				if err := dryRun(obj); err != nil {
					t.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
				kinds[obj.GetKind()]++
			}
			for _, k := range []string{"Gateway", "HTTPRoute", "HealthCheckPolicy", "GCPBackendPolicy", "Deployment", "NetworkPolicy"} {
				if kinds[k] == 0 {
					t.Errorf("no %s applied", k)
				}
			}
			t.Logf("%d objects accepted: %v", len(objs), kinds)
		})
	}

	// The rules are enforced: the API server refuses what they forbid.
	for name, doc := range map[string]string{
		"HTTP listener with TLS": `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bad}
spec:
  gatewayClassName: gke-l7-global-external-managed
  listeners:
    - {name: http, protocol: HTTP, port: 80, tls: {mode: Terminate}}`,
		"health check on port 0": `apiVersion: networking.gke.io/v1
kind: HealthCheckPolicy
metadata: {name: bad}
spec:
  default: {config: {type: HTTP, httpHealthCheck: {portSpecification: USE_FIXED_PORT, port: 0, requestPath: /ready}}}
  targetRef: {group: "", kind: Service, name: specgate-public}`,
		"unknown field in a backend policy": `apiVersion: networking.gke.io/v1
kind: GCPBackendPolicy
metadata: {name: bad}
spec:
  default: {timeoutSecs: 65}
  targetRef: {group: "", kind: Service, name: specgate-public}`,
	} {
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		if err := dryRun(obj); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}

// installCRD creates the CustomResourceDefinition of file (once per API server) and waits
// until it is established.
func installCRD(t *testing.T, dyn dynamic.Interface, file string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := utilyaml.Unmarshal(b, &crd.Object); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s: %v", file, err)
	}
	testutil.Eventually(t, 30*time.Second, "CRD "+crd.GetName()+" established", func() bool {
		got, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	})
}

// kustomizeObjects builds dir into unstructured objects.
func kustomizeObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	var errs []error
	for _, r := range m.Resources() {
		mp, err := r.Map()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.CurId(), err))
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: mp})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return objs
}
