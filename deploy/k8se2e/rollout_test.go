//go:build k8se2e

package k8se2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/realspecs"
	"github.com/specgate/specgate/test/harness/specgen"
	"github.com/specgate/specgate/test/harness/testutil"
	"github.com/specgate/specgate/xds"
)

const reviewsSpec = `openapi: 3.1.0
info: {title: Reviews, version: 1.0.0}
x-specgate: {service: reviews, backend: "http://catalog.shop.svc.cluster.local:8080", basePath: /reviews}
security: []
paths:
  /{id}: {get: {operationId: getReview, responses: {"200": {description: ok}}}}
`

// A spec change through the production path (the change API, the spec store, both control
// planes) goes live on every Envoy pod in under 2 s.
func TestSpecChangeGoesLive(t *testing.T) {
	c := up(t)
	defer c.admin("DELETE", c.xds+"/v1/specs/reviews?allowRisky=true", nil)
	began := time.Now()
	code, body := c.admin("POST", c.xds+"/v1/changes", xds.ChangeSet{Specs: []xds.SpecFile{{Name: "reviews.yaml", Content: []byte(reviewsSpec)}}, AllowRisky: true, Reason: "e2e"})
	if code != 200 {
		t.Fatalf("change: %d %s", code, body)
	}
	// Every Envoy pod: ten answers in a row through the Service, which balances over them.
	took := testutil.Eventually(t, 10*time.Second, "/reviews/1 served by every Envoy pod", func() bool {
		for range 10 {
			if c.status("GET", "/reviews/1", "") != 200 {
				return false
			}
		}
		return true
	})
	t.Logf("figure: spec change → live on every Envoy pod: %s (%s after the change API answered)", time.Since(began).Round(time.Millisecond), took.Round(time.Millisecond))
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the change took %s to go live, goal < 2s", d)
	}
}

// kubectl rollout restart of each Deployment in turn, under 200 requests a second of mixed
// traffic: no request fails.
func TestRolloutsUnderLoad(t *testing.T) {
	c := up(t)
	for _, d := range []string{"specgate-envoy", "specgate-xds", "specgate-authz", "specgate-ratelimit"} {
		t.Run(d, func(t *testing.T) {
			c.t = t
			l := c.startLoad(200)
			began := time.Now()
			c.kubectl("-n", ns, "rollout", "restart", "deployment/"+d)
			c.kubectl("-n", ns, "rollout", "status", "deployment/"+d, "--timeout=300s")
			took := time.Since(began)
			time.Sleep(3 * time.Second) // the old pods' last requests and drains
			l.stop()
			t.Logf("figure: rollout of %s: %s, %d requests, %d failed %v", d, took.Round(100*time.Millisecond), l.total.Load(), l.failed.Load(), l.seen)
			if l.failed.Load() > 0 || l.total.Load() == 0 {
				t.Errorf("%d of %d requests failed during the rollout of %s: %v", l.failed.Load(), l.total.Load(), d, l.seen)
			}
		})
	}
}

// A revocation made at one authz pod is in force at every authz pod within a second.
func TestRevocationReachesEveryAuthzPod(t *testing.T) {
	c := up(t)
	pods := c.podIPs("authz")
	if len(pods) < 2 {
		t.Fatalf("authz pods: %v, want at least 2", pods)
	}
	entries := func(ip string) float64 {
		resp, err := http.Get("http://" + ip + ":9002/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "specgate_authz_revocation_entries "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	before := map[string]float64{}
	for _, ip := range pods {
		before[ip] = entries(ip)
	}
	began := time.Now()
	if code, body := c.admin("POST", "http://"+pods[0]+":9002/v1/revocations", map[string]any{"sub": fmt.Sprintf("fanout-%d", began.UnixNano())}); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	var slowest time.Duration
	for _, ip := range pods {
		d := testutil.Eventually(t, 5*time.Second, "the revocation at authz "+ip, func() bool { return entries(ip) > before[ip] })
		slowest = max(slowest, d)
	}
	t.Logf("figure: a revocation in force at all %d authz pods %s after the API answered", len(pods), slowest.Round(time.Millisecond))
	if slowest > time.Second {
		t.Errorf("the revocation took %s to reach every authz pod, goal 1s", slowest)
	}
}

// With the control plane down, a new Envoy pod has no listeners: it stays NotReady (out of the
// Service) and is not restarted while it waits; it becomes Ready once the control plane is
// back.
func TestEnvoyNotReadyWithoutConfig(t *testing.T) {
	c := up(t)
	c.kubectl("-n", ns, "scale", "deployment/specgate-xds", "--replicas=0")
	defer func() {
		c.kubectl("-n", ns, "scale", "deployment/specgate-xds", "--replicas=2")
		c.kubectl("-n", ns, "rollout", "status", "deployment/specgate-xds", "--timeout=120s")
	}()
	// Gone, not only shutting down: a pod in its preStop still serves ADS.
	testutil.Eventually(t, 60*time.Second, "no control-plane pod", func() bool {
		return strings.TrimSpace(c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=xds", "-o", "name")) == ""
	})
	old := strings.Fields(c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=envoy", "-o", "jsonpath={.items[*].metadata.name}"))
	c.kubectl("-n", ns, "delete", "pod", old[0], "--wait=false")
	var fresh string
	testutil.Eventually(t, 30*time.Second, "a new Envoy pod", func() bool {
		for _, p := range strings.Fields(c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=envoy", "-o", "jsonpath={.items[*].metadata.name}")) {
			if p != old[0] && p != old[1] {
				fresh = p
				return true
			}
		}
		return false
	})
	// Envoy gives up its initial fetches after 15 s each (clusters, then listeners): watch
	// past that.
	deadline := time.Now().Add(50 * time.Second)
	for time.Now().Before(deadline) {
		state := c.kubectl("-n", ns, "get", "pod", fresh, "-o", `jsonpath={.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}`)
		ready, restarts, _ := strings.Cut(strings.TrimSpace(state), " ")
		if ready == "true" {
			t.Fatalf("Envoy pod %s is Ready without a control plane (its listeners are not there)", fresh)
		}
		if restarts != "0" && restarts != "" {
			t.Fatalf("Envoy pod %s was restarted %s times while it waited for the control plane", fresh, restarts)
		}
		time.Sleep(time.Second)
	}
	c.kubectl("-n", ns, "scale", "deployment/specgate-xds", "--replicas=2")
	c.kubectl("-n", ns, "wait", "pod/"+fresh, "--for=condition=Ready", "--timeout=120s")
}

// The fleet of the spec store's test (test/fleet: the 4 real descriptions and 96 synthetic
// services, 20 MB) loads in the cluster: one sync through the change API, both control-plane
// replicas serve it, every Envoy pod serves its routes within the pods' memory limits; then
// a rollback restores the example set.
func TestFleetLoadsInTheCluster(t *testing.T) {
	c := up(t)
	backend := "http://catalog.shop.svc.cluster.local:8080"
	cs := xds.ChangeSet{Sync: true, AllowRisky: true, Reason: "e2e fleet"}
	for _, src := range realspecs.All {
		b, err := realspecs.Prepare(src, backend)
		if err != nil {
			t.Fatal(err)
		}
		cs.Specs = append(cs.Specs, xds.SpecFile{Name: src.Name + filepath.Ext(src.File), Content: b})
	}
	for s := range 96 {
		b := bytes.ReplaceAll(specgen.Documented(s, 20, 20<<10), fmt.Appendf(nil, "http://svc-%d.shop.svc.cluster.local:8080", s), []byte(backend))
		cs.Specs = append(cs.Specs, xds.SpecFile{Name: fmt.Sprintf("svc-%03d.yaml", s), Content: b})
	}
	size := 0
	for _, f := range cs.Specs {
		size += len(f.Content)
	}
	baseline := map[string]float64{}
	for _, ip := range c.podIPs("envoy") {
		baseline[ip] = envoyMemoryMB(ip)
	}
	began := time.Now()
	code, body := c.admin("POST", c.xds+"/v1/changes", cs)
	if code != 200 {
		t.Fatalf("the fleet's sync: %d %.500s", code, body)
	}
	defer func() {
		if code, body := c.admin("POST", c.xds+"/v1/rollback", xds.RollbackRequest{ChangeSet: xds.ChangeSet{AllowRisky: true, Reason: "e2e fleet done"}}); code != 200 {
			t.Errorf("rollback: %d %.300s", code, body)
		}
	}()
	alice := c.token("alice", "svc0:read")
	for _, path := range []string{"/github/meta", "/svc0/things0", "/svc95/things1/x"} {
		tok := ""
		if strings.HasPrefix(path, "/svc") {
			tok = alice
			if path == "/svc95/things1/x" {
				tok = c.token("alice", "svc95:read")
			}
		}
		testutil.Eventually(t, 60*time.Second, "GET "+path+" from every Envoy pod", func() bool {
			for _, ip := range c.podIPs("envoy") {
				if code, _, _ := c.doAt("http://"+ip+":8080", "GET", path, tok); code != 200 {
					return false
				}
			}
			return true
		})
	}
	t.Logf("figure: a %d-service fleet (%.1f MB) in the cluster: applied and served by every Envoy pod %s after the sync", len(cs.Specs), float64(size)/1e6, time.Since(began).Round(100*time.Millisecond))
	// What the route tables cost Envoy (limit 1 GiB). Envoy updates the gauge when it flushes
	// its stats (every 5 s): wait for a value newer than the one before the sync.
	for ip, before := range baseline {
		var mb float64
		testutil.Eventually(t, 20*time.Second, "Envoy pod "+ip+" flushing its memory gauge", func() bool {
			mb = envoyMemoryMB(ip)
			return mb > before+1
		})
		t.Logf("figure: Envoy pod %s with the fleet: %.0f MB allocated (%.0f MB before)", ip, mb, before)
	}
	for _, role := range []string{"xds", "envoy"} {
		restarts := c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component="+role, "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}")
		if strings.Trim(restarts, "0 ") != "" {
			t.Errorf("%s pods restarted while loading the fleet (OOM?): %s", role, restarts)
		}
	}
}

// envoyMemoryMB is envoy_server_memory_allocated of the Envoy pod at ip, in MB (0 when it
// cannot be read).
func envoyMemoryMB(ip string) float64 {
	resp, err := http.Get("http://" + ip + ":9902/stats/prometheus")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && strings.TrimSuffix(name, "{}") == "envoy_server_memory_allocated" {
			n, _ := strconv.ParseFloat(v, 64)
			return n / 1e6
		}
	}
	return 0
}
