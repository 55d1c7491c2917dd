package stats

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

const sample = `# TYPE specgate_authz_checks_total counter
specgate_authz_checks_total{decision="allow",reason="ok",route="orders.get"} 90
specgate_authz_checks_total{decision="deny",reason="expired",route="orders.get"} 6
specgate_authz_checks_total{decision="deny",reason="insufficient_scope",route="orders.delete"} 4
# TYPE specgate_authz_check_duration_seconds histogram
specgate_authz_check_duration_seconds_bucket{le="1e-05"} 50
specgate_authz_check_duration_seconds_bucket{le="2e-05"} 98
specgate_authz_check_duration_seconds_bucket{le="0.0001"} 100
specgate_authz_check_duration_seconds_bucket{le="+Inf"} 100
specgate_authz_check_duration_seconds_sum 0.0015
specgate_authz_check_duration_seconds_count 100
# TYPE specgate_authz_refused_claims_total counter
specgate_authz_refused_claims_total{claim="iss",value="http://localhost:8080/realms/shop"} 7
specgate_authz_refused_claims_total{claim="iss",value="https://evil.example/"} 2
specgate_authz_refused_claims_total{claim="aud",value="account"} 9
# TYPE specgate_authz_token_cache_total counter
specgate_authz_token_cache_total{result="hit"} 80
specgate_authz_token_cache_total{result="miss"} 20
# TYPE specgate_authz_revocations_total counter
specgate_authz_revocations_total 3
# TYPE specgate_authz_revocation_entries gauge
specgate_authz_revocation_entries 3
# TYPE specgate_authz_jwks_keys gauge
specgate_authz_jwks_keys{issuer="https://a/"} 2
specgate_authz_jwks_keys{issuer="https://b/"} 0
# TYPE specgate_authz_jwks_refresh_total counter
specgate_authz_jwks_refresh_total{issuer="https://a/",result="ok"} 4
specgate_authz_jwks_refresh_total{issuer="https://b/",result="error"} 7
`

func TestSummarize(t *testing.T) {
	s, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := s.WriteText(&b, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"100 checks", "allow 90 (90.0%)", "deny 10 (10.0%)",
		"10µs", "18.3µs", "expired", "60.0% of denials", "orders.delete",
		"hit ratio 80.0%", "live entries", "NO KEYS: tokens refused",
		"TOP REFUSED ISSUERS", "http://localhost:8080/realms/shop  7", "TOP REFUSED AUDIENCES", "account",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if _, err := Read(strings.NewReader("# TYPE x counter\nx 1\n")); err == nil {
		t.Error("non-authz metrics accepted")
	}
}

// Several replicas add up: counters summed, histograms merged bucket by bucket, the revocation
// set's figures the largest replica's, an issuer's keys the fewest any replica holds. As JSON,
// the same figures.
func TestSummarizeReplicas(t *testing.T) {
	other := strings.NewReplacer(`route="orders.get"} 90`, `route="orders.get"} 10`,
		`specgate_authz_jwks_keys{issuer="https://a/"} 2`, `specgate_authz_jwks_keys{issuer="https://a/"} 1`,
		"specgate_authz_revocation_entries 3", "specgate_authz_revocation_entries 5").Replace(sample)
	s, err := Read(strings.NewReader(sample), strings.NewReader(other))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := s.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got Summary
	if err := json.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatal(err)
	}
	if got.Replicas != 2 || got.Checks != 120 || got.Allowed != 100 || got.Denied != 20 || got.Revocations.Accepted != 6 ||
		got.Revocations.LiveEntries != 5 || got.TokenCacheHits != 160 || got.JWKS[0].Keys != 1 || got.JWKS[0].FetchesOK != 8 ||
		got.Latency == nil || got.Latency.P50 != 1e-5 || len(got.RefusedIssuers) != 2 || got.RefusedIssuers[0].Count != 14 {
		t.Errorf("two replicas: %s", b.String())
	}
}

func TestQuantile(t *testing.T) {
	h := &dto.Histogram{SampleCount: proto.Uint64(100), Bucket: []*dto.Bucket{
		{UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(50)},
		{UpperBound: proto.Float64(2), CumulativeCount: proto.Uint64(100)},
	}}
	for q, want := range map[float64]float64{0.5: 1, 0.75: 1.5, 0.99: 1.98, 0.25: 0.5} {
		if got := quantile(h, q); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("q%.2f = %g, want %g", q, got, want)
		}
	}
}
