package ratelimit

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/policy"
	"github.com/specgate/specgate/ratelimit/rules"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// t0 is 10s into a minute window.
var t0 = time.Date(2030, 1, 2, 3, 4, 10, 0, time.UTC)

const limitsYAML = `
name: specgate
domain: specgate
descriptors:
- key: route
  value: orders.list
  descriptors:
  - {key: limit, value: "0", rate_limit: {unit: MINUTE, requests_per_unit: 2}}
- key: route
  value: orders.get
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: header, rate_limit: {unit: MINUTE, requests_per_unit: 1}}]
`

func writeFile(t testing.TB, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the service on loopback ports until the test ends and returns a client.
func start(t testing.TB, o Options) (*Server, rlsv3.RateLimitServiceClient) {
	t.Helper()
	o.GRPCAddr, o.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, rlsv3.NewRateLimitServiceClient(conn)
}

// d builds a descriptor from key/value pairs.
func d(kv ...string) *rlcommon.RateLimitDescriptor {
	var es []*rlcommon.RateLimitDescriptor_Entry
	for i := 0; i < len(kv); i += 2 {
		es = append(es, &rlcommon.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return &rlcommon.RateLimitDescriptor{Entries: es}
}

func ask(t *testing.T, c rlsv3.RateLimitServiceClient, ds ...*rlcommon.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: policy.Domain, Descriptors: ds})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if len(r.Statuses) != len(ds) {
		t.Fatalf("%d statuses for %d descriptors", len(r.Statuses), len(ds))
	}
	return r
}

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)

// metric sums the samples of a metric whose labels include the given pairs.
func metric(t *testing.T, s *Service, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func TestLimitsFileOverGRPC(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.Set(t0)
	s, c := start(t, Options{Config: config.Default(), LimitsFile: writeFile(t, limitsYAML), Clock: clock})
	svc := s.Service()

	list := d("route", "orders.list", "limit", "0")
	for i, want := range []uint32{1, 0} {
		r := ask(t, c, list)
		st := r.Statuses[0]
		if r.OverallCode != ok || st.Code != ok || st.LimitRemaining != want ||
			st.CurrentLimit.GetRequestsPerUnit() != 2 || st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE ||
			st.DurationUntilReset.AsDuration() != 50*time.Second {
			t.Fatalf("request %d: %v", i+1, r)
		}
		if len(r.ResponseHeadersToAdd) != 0 {
			t.Fatalf("headers on an allowed request: %v", r.ResponseHeadersToAdd)
		}
	}
	clock.Set(t0.Add(45*time.Second + 100*time.Millisecond))
	r := ask(t, c, list, d("route", "orders.get", "limit", "0", "header", "k1"))
	if r.OverallCode != over || r.Statuses[0].Code != over || r.Statuses[1].Code != ok ||
		r.Statuses[0].LimitRemaining != 0 || r.Statuses[0].DurationUntilReset.AsDuration() != 4900*time.Millisecond {
		t.Fatalf("third request: %v", r)
	}
	if h := r.ResponseHeadersToAdd; len(h) != 1 || h[0].Key != "retry-after" || h[0].Value != "5" {
		t.Fatalf("Retry-After: %v", h)
	}

	// Per-value buckets: another header value has its own bucket; a very long value works
	// and gets its own bounded key.
	long1, long2 := strings.Repeat("x", 1<<16), strings.Repeat("x", 1<<16-1)+"y"
	for _, v := range []string{"k2", long1, long2} {
		if r := ask(t, c, d("route", "orders.get", "limit", "0", "header", v)); r.OverallCode != ok {
			t.Fatalf("first hit of value %.10q: %v", v, r)
		}
	}
	if r := ask(t, c, d("route", "orders.get", "limit", "0", "header", long1)); r.OverallCode != over {
		t.Fatalf("second hit of a long value: %v", r)
	}

	// Unknown routes and empty values are allowed and counted; never an error.
	r = ask(t, c, d("route", "nope", "limit", "0"), d("route", "orders.get", "limit", "0", "header", ""), list)
	if r.OverallCode != over || r.Statuses[0].Code != ok || r.Statuses[1].Code != ok || r.Statuses[0].CurrentLimit != nil {
		t.Fatalf("unknown and invalid descriptors: %v", r)
	}
	if n := metric(t, svc, "specgate_ratelimit_unknown_descriptors_total", "reason", "unknown"); n != 1 {
		t.Errorf("unknown = %v", n)
	}
	if n := metric(t, svc, "specgate_ratelimit_unknown_descriptors_total", "reason", "invalid"); n != 1 {
		t.Errorf("invalid = %v", n)
	}
	if n := metric(t, svc, "specgate_ratelimit_decisions_total", "route", "orders.list", "key", "route", "decision", "over_limit"); n != 2 {
		t.Errorf("over_limit decisions = %v", n)
	}
	if n := metric(t, svc, "specgate_ratelimit_decisions_total", "route", "orders.get", "key", "header", "decision", "ok"); n != 4 {
		t.Errorf("ok header decisions = %v", n)
	}
	// A request for another domain is not ours.
	ctx := context.Background()
	if r, err := c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "other", Descriptors: []*rlcommon.RateLimitDescriptor{list}}); err != nil || r.OverallCode != ok {
		t.Fatalf("other domain: %v, %v", r, err)
	}

	if code, _ := get(t, "http://"+s.HTTPAddr()+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d with a config", code)
	}
	if code, body := get(t, "http://"+s.HTTPAddr()+"/metrics"); code != 200 || !strings.Contains(body, "specgate_ratelimit_decisions_total") {
		t.Errorf("/metrics = %d:\n%.300s", code, body)
	}
}

func TestNotReadyUntilConfig(t *testing.T) {
	t.Parallel()
	// A control plane that never answers: the service serves, allows, and is not ready.
	s, c := start(t, Options{Config: config.Default(), XDSAddr: "127.0.0.1:1"})
	if code, _ := get(t, "http://"+s.HTTPAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d without a config", code)
	}
	if code, _ := get(t, "http://"+s.HTTPAddr()+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc health = %v, %v", h, err)
	}
	if r := ask(t, c, d("route", "orders.list", "limit", "0")); r.OverallCode != ok {
		t.Errorf("without config: %v", r)
	}
	if n := metric(t, s.Service(), "specgate_ratelimit_unknown_descriptors_total", "reason", "no_config"); n != 1 {
		t.Errorf("no_config = %v", n)
	}
}

// TestConfigUpdateRemovesLimit: counters of a limit that a new config removes do no harm,
// and the new config applies at once.
func TestConfigUpdateRemovesLimit(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{}
	clock.Set(t0)
	s, c := start(t, Options{Config: config.Default(), LimitsFile: writeFile(t, limitsYAML), Clock: clock})
	list := d("route", "orders.list", "limit", "0")
	hdr := d("route", "orders.get", "limit", "0", "header", "k")
	ask(t, c, list, hdr)
	ask(t, c, list)
	if r := ask(t, c, list, hdr); r.Statuses[0].Code != over || r.Statuses[1].Code != over {
		t.Fatalf("before the update: %v", r)
	}
	update := `
domain: specgate
descriptors:
- key: route
  value: orders.get
  descriptors:
  - key: limit
    value: "0"
    descriptors: [{key: header, rate_limit: {unit: MINUTE, requests_per_unit: 3}}]
`
	if err := s.Service().SetConfig([]*rlsconf.RateLimitConfig{loadCfg(t, update)}); err != nil {
		t.Fatal(err)
	}
	r := ask(t, c, list, hdr)
	if r.Statuses[0].Code != ok || r.Statuses[0].CurrentLimit != nil {
		t.Fatalf("removed limit still applies: %v", r)
	}
	// The bucket of the header limit kept its count (2 of now 3): one more is allowed.
	if st := r.Statuses[1]; st.Code != ok || st.LimitRemaining != 0 || st.CurrentLimit.GetRequestsPerUnit() != 3 {
		t.Fatalf("new limit: %v", st)
	}
	if r := ask(t, c, hdr); r.OverallCode != over {
		t.Fatalf("new limit not enforced: %v", r)
	}
	// A config that cannot be built leaves the live one.
	if err := s.Service().SetConfig([]*rlsconf.RateLimitConfig{{Domain: policy.Domain, Descriptors: []*rlsconf.RateLimitDescriptor{{Key: "route"}}}}); err == nil {
		t.Fatal("bad config accepted")
	}
	if r := ask(t, c, hdr); r.OverallCode != over {
		t.Fatalf("live config lost after a refused update: %v", r)
	}
	if n := metric(t, s.Service(), "specgate_ratelimit_config_updates_total", "result", "rejected"); n != 1 {
		t.Errorf("rejected updates = %v", n)
	}
}

func loadCfg(t *testing.T, doc string) *rlsconf.RateLimitConfig {
	t.Helper()
	c, err := rules.ReadFile(writeFile(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
