//go:build k8se2e

package k8se2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/testutil"
)

// clientPod runs the cluster's echo image as an HTTP client in namespace n with labels, and
// returns a function that GETs a URL from it (true: a 2xx answer).
func (c *cluster) clientPod(n, name string, labels ...string) func(url string) bool {
	return c.client(n, name, true, labels...)
}

// client is clientPod; a pod that is not ready is never a Service's endpoint, so it may carry
// the labels of a role (its NetworkPolicies apply) without taking that role's traffic.
func (c *cluster) client(n, name string, ready bool, labels ...string) func(url string) bool {
	c.t.Helper()
	if _, err := c.try("get", "namespace", n); err != nil {
		c.kubectl("create", "namespace", n)
	}
	c.try("-n", n, "delete", "pod", name, "--wait=true", "--grace-period=0", "--force")
	// Restricted, as specgate's namespace enforces.
	probe := ""
	if !ready {
		probe = `"readinessProbe":{"tcpSocket":{"port":1},"periodSeconds":60},`
	}
	restricted := fmt.Sprintf(`{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":65532,"seccompProfile":{"type":"RuntimeDefault"}},`+
		`"containers":[{"name":%q,"image":"localhost/echo:1","imagePullPolicy":"IfNotPresent",%s"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}`, name, probe)
	args := []string{"-n", n, "run", name, "--image=localhost/echo:1", "--restart=Never", "--overrides=" + restricted}
	if len(labels) > 0 {
		args = append(args, "--labels="+strings.Join(labels, ","))
	}
	c.kubectl(args...)
	if ready {
		c.kubectl("-n", n, "wait", "pod/"+name, "--for=condition=Ready", "--timeout=60s")
	} else {
		c.kubectl("-n", n, "wait", "pod/"+name, "--for=jsonpath={.status.phase}=Running", "--timeout=60s")
	}
	return func(url string) bool {
		_, err := c.try("-n", n, "exec", name, "--", "/echo", "get", url)
		return err == nil
	}
}

// With kube-router enforcing them, deploy/base's NetworkPolicies admit exactly the documented
// flows: the internal listener from any namespace, the admin and metrics ports only from
// specgate's own namespace, authz's Check only from Envoy; and Envoy reaches backends in other
// namespaces but not the gateway's own listeners and admin ports.
func TestNetworkPolicies(t *testing.T) {
	c := up(t)
	authz := c.podIPs("authz")[0]
	outside := c.clientPod("e2e-outside", "client")
	inside := c.clientPod(ns, "e2e-client", "app=e2e-client")
	// Envoy's egress policy applies to a pod with Envoy's labels (never ready: no Service sends
	// it traffic). The internal listener and the admin ports admit it on ingress, as a pod of
	// the namespace: only the egress policy refuses.
	asEnvoy := c.client(ns, "e2e-as-envoy", false, "app.kubernetes.io/name=specgate", "app.kubernetes.io/component=envoy")
	defer c.try("-n", ns, "delete", "pod", "e2e-as-envoy", "--wait=false")
	backend := "http://catalog.shop.svc.cluster.local.:8080/products"
	internal := "http://specgate-internal.specgate.svc.cluster.local.:8081/catalog/products"
	xdsAdmin := "http://specgate-xds.specgate.svc.cluster.local.:18001/healthz"
	authzAdmin := "http://" + authz + ":9002/healthz"
	for _, f := range []struct {
		what string
		from func(string) bool
		url  string
		want bool
	}{
		{"another namespace → Envoy's internal listener", outside, internal, true},
		{"another namespace → the control plane's API", outside, xdsAdmin, false},
		{"another namespace → authz's admin port", outside, authzAdmin, false},
		{"specgate's namespace → the control plane's API", inside, xdsAdmin, true},
		{"specgate's namespace → authz's admin port", inside, authzAdmin, true},
		{"Envoy → a backend in another namespace", asEnvoy, backend, true},
		{"Envoy → its own internal listener", asEnvoy, internal, false},
		{"Envoy → the control plane's API", asEnvoy, xdsAdmin, false},
		{"Envoy → authz's admin port", asEnvoy, authzAdmin, false},
	} {
		// The policy for a new pod may take a moment to be programmed: poll.
		testutil.Eventually(t, 15*time.Second, fmt.Sprintf("%s admitted: %t", f.what, f.want), func() bool { return f.from(f.url) == f.want })
		t.Logf("%s: admitted %t", f.what, f.want)
	}
}

// coreDNSAnswers sums CoreDNS's responses by rcode (its prometheus plugin on the node).
func coreDNSAnswers(t *testing.T) map[string]float64 {
	resp, err := http.Get("http://10.201.0.1:9153/metrics")
	if err != nil {
		t.Fatalf("CoreDNS metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "coredns_dns_responses_total{") {
			continue
		}
		i := strings.Index(line, `rcode="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		rcode := line[i+7:]
		rcode = rcode[:strings.IndexByte(rcode, '"')]
		v, _ := strconv.ParseFloat(line[j+1:], 64)
		out[rcode] += v
	}
	return out
}

// The gateway's own lookups (Envoy's peers and backends, ratelimit's control plane, the
// stores) are not a storm of search-domain NXDOMAINs: through rollouts and traffic, most
// answers are answers.
func TestNoSearchDomainStorm(t *testing.T) {
	c := up(t)
	before := coreDNSAnswers(t)
	l := c.startLoad(100)
	for _, d := range []string{"specgate-ratelimit", "specgate-authz"} {
		c.kubectl("-n", ns, "rollout", "restart", "deployment/"+d)
		c.kubectl("-n", ns, "rollout", "status", "deployment/"+d, "--timeout=300s")
	}
	time.Sleep(10 * time.Second) // Envoy's DNS refreshes, every second per peer
	l.stop()
	after := coreDNSAnswers(t)
	nx, all := after["NXDOMAIN"]-before["NXDOMAIN"], 0.0
	for rcode, v := range after {
		all += v - before[rcode]
	}
	t.Logf("figure: DNS answers during two rollouts and %d requests: %.0f, of which NXDOMAIN %.0f (%.0f%%)", l.total.Load(), all, nx, 100*nx/max(all, 1))
	if all == 0 || nx > 0.1*all {
		t.Errorf("%.0f of %.0f DNS answers were NXDOMAIN: names are tried against the search list", nx, all)
	}
}

// kubectl delete pod --force of one pod of each role, under load: revocations hold (a revoked
// token stays refused at every authz pod, old and new), and the failed requests are reported.
func TestForcedPodDeletion(t *testing.T) {
	c := up(t)
	mallory := c.token(fmt.Sprintf("mallory-%d", time.Now().UnixNano()), "orders:read")
	if code, body := c.admin("POST", "http://"+c.podIPs("authz")[0]+":9002/v1/revocations", map[string]any{"token": mallory}); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	for _, role := range []string{"envoy", "xds", "authz", "ratelimit"} {
		t.Run(role, func(t *testing.T) {
			c.t = t
			l := c.startLoad(200)
			pod := strings.Fields(c.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/component="+role, "-o", "jsonpath={.items[*].metadata.name}"))[0]
			began := time.Now()
			c.kubectl("-n", ns, "delete", "pod", pod, "--force", "--grace-period=0")
			c.kubectl("-n", ns, "rollout", "status", "deployment/specgate-"+role, "--timeout=120s")
			took := time.Since(began)
			time.Sleep(2 * time.Second)
			l.stop()
			t.Logf("figure: %s pod force-deleted: replaced in %s, %d of %d requests failed %v", role, took.Round(100*time.Millisecond), l.failed.Load(), l.total.Load(), l.seen)
			for range 8 {
				if code := c.status("GET", "/orders/1", mallory); code != 401 {
					t.Fatalf("the revoked token answered %d after the %s pod was force-deleted", code, role)
				}
			}
		})
	}
}
