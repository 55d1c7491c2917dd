package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/stats"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testutil"
)

// specgate stats adds up the authz replicas: through a real Envoy balancing over three of
// them, the checks of every replica are counted once, allows and denials apart.
func TestStatsAcrossReplicas(t *testing.T) {
	s, send := threeReplicas(t)
	const allowed, denied = 30, 12
	send(allowed, denied)
	args := []string{"stats", "-o", "json"}
	for _, a := range s.Authz {
		args = append(args, "--server", "http://"+a.HTTP)
	}
	var got stats.Summary
	out, _, err := run(t, args...)
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if got.Replicas != 3 || got.Allowed != allowed || got.Denied != denied {
		t.Errorf("three replicas: %d replicas, %v allowed, %v denied; want 3, %d, %d\n%s", got.Replicas, got.Allowed, got.Denied, allowed, denied, out)
	}
}

// specgate stats --prometheus: the same figures from a real Prometheus (Debian's) scraping
// three authz replicas, over the last --since, within 15 % of the truth (increase()
// extrapolates to the window's edges).
func TestStatsFromPrometheus(t *testing.T) {
	bin := testutil.Tool(t, "PROMETHEUS_BIN", "prometheus/prometheus", "prometheus", "prometheus")
	s, send := threeReplicas(t)
	var targets []string
	for _, a := range s.Authz {
		targets = append(targets, `"`+a.HTTP+`"`)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: authz\n    static_configs: [{targets: ["+strings.Join(targets, ", ")+"], labels: {namespace: specgate}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	var log bytes.Buffer
	prom := exec.Command(bin, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "data"), "--log.level", "warn", "--web.listen-address", addr)
	prom.Stdout, prom.Stderr = &log, &log
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	api := "http://" + addr
	since := "5m"
	stats3 := func() (stats.Summary, error) {
		var got stats.Summary
		out, _, err := run(t, "stats", "--prometheus", api, "--since", since, "--selector", `namespace="specgate"`, "-o", "json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &got)
		}
		return got, err
	}
	testutil.Eventually(t, 30*time.Second, "Prometheus scraping the three replicas", func() bool {
		got, err := stats3()
		return err == nil && got.Replicas == 3
	})
	// Prometheus counts a series' increase from its first scrape on: make each replica's
	// allow and deny series exist, and be scraped, before the requests that are counted.
	send(30, 30)
	testutil.Eventually(t, 20*time.Second, "Prometheus holding six series of checks", func() bool {
		resp, err := http.Get(api + "/api/v1/query?query=count(specgate_authz_checks_total)")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct{ Value [2]any }
			}
		}
		return json.NewDecoder(resp.Body).Decode(&r) == nil && len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "6"
	})
	// The window starts once the warm-up's last increments are scraped too.
	time.Sleep(2500 * time.Millisecond)
	t0 := time.Now()
	const allowed, denied = 30, 12
	send(allowed, denied)
	// A window of a dozen scrapes: increase() extrapolates its samples' span (one scrape
	// shorter than the window) to the whole window, a few percent here.
	time.Sleep(time.Until(t0.Add(12 * time.Second)))
	// From a scrape before the first counted request: the window holds the step whole.
	since = (time.Since(t0) + 2*time.Second).Round(time.Second).String()
	got, err := stats3()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus, the last %s: %.1f allowed, %.1f denied over %d replicas (sent %d, %d)", got.Window, got.Allowed, got.Denied, got.Replicas, allowed, denied)
	// increase() extrapolates from the first and last samples to the window's edges.
	near := func(got float64, want int) bool { return math.Abs(got-float64(want)) <= max(2, 0.15*float64(want)) }
	if got.Replicas != 3 || !near(got.Allowed, allowed) || !near(got.Denied, denied) || got.Latency == nil || got.Window != since {
		t.Errorf("from Prometheus: %+v", got)
	}
}

// threeReplicas is the shop stack with three authz replicas behind a real Envoy, and a
// function that sends allowed requests with a token and denied ones without.
func threeReplicas(t *testing.T) (*stack.Stack, func(allowed, denied int)) {
	b := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec},
		Vars: map[string]string{"PORT": b.Port(), "LIMIT": "1000"}, AuthzReplicas: 3,
		// A check slowed by a busy machine must not turn into a 503 that neither counts.
		Configure: func(c *config.Gateway) { c.Authz.Timeout = config.Duration{Duration: 2 * time.Second} }})
	alice := s.Token("alice", "orders:read")
	return s, func(allowed, denied int) {
		for i := range allowed + denied {
			req, _ := http.NewRequest("GET", s.Public+"/shop/orders", nil)
			if i < allowed {
				req.Header.Set("Authorization", "Bearer "+alice)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
}

// --kube-service reads each ready pod once, on the port named http: not a pod that is not
// ready, not a slice without that port, not a pod's second address family.
func TestReadyURLs(t *testing.T) {
	const httpPort, grpcPort = "http", "grpc"
	port := func(name string, p int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &p}
	}
	pod := func(uid, addr string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", UID: types.UID(uid)}}
	}
	got := readyURLs([]discoveryv1.EndpointSlice{
		{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port(grpcPort, 9001), port(httpPort, 9002)},
			Endpoints: []discoveryv1.Endpoint{pod("b", "10.0.0.2", true), pod("a", "10.0.0.1", true), pod("c", "10.0.0.3", false)}},
		{AddressType: discoveryv1.AddressTypeIPv6, Ports: []discoveryv1.EndpointPort{port(httpPort, 9002)},
			Endpoints: []discoveryv1.Endpoint{pod("a", "fd00::1", true)}},
		{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port(grpcPort, 9001)},
			Endpoints: []discoveryv1.Endpoint{pod("d", "10.0.0.4", true)}},
	})
	if want := "[http://10.0.0.1:9002 http://10.0.0.2:9002]"; fmt.Sprint(got) != want {
		t.Errorf("readyURLs: %v, want %s", got, want)
	}
}
