package stats

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// FromPrometheus is the Summary of the last window, across every authz replica a Prometheus
// server scrapes (Managed Service for Prometheus, or any Prometheus API at url): counts are
// PromQL increases over the window, the latency the window's histogram. selector, when set,
// narrows every series (`namespace="specgate"`).
func FromPrometheus(ctx context.Context, url, selector string, window time.Duration) (*Summary, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, err
	}
	p := promv1.NewAPI(c)
	w := model.Duration(window).String()
	sel := func(extra string) string {
		return "{" + strings.Trim(strings.Join([]string{selector, extra}, ","), ",") + "}"
	}
	now := time.Now()
	query := func(q string) (model.Vector, error) {
		v, _, _, err := p.Query(ctx, q, now)
		if err != nil {
			return nil, fmt.Errorf("stats: prometheus %s: %w", q, err)
		}
		vec, _ := v.(model.Vector)
		return vec, nil
	}
	// each runs q and hands every sample's labels and value to f.
	var qerr error
	each := func(q string, f func(l model.Metric, v float64)) {
		if qerr != nil {
			return
		}
		vec, err := query(q)
		if err != nil {
			qerr = err
			return
		}
		for _, s := range vec {
			if !math.IsNaN(float64(s.Value)) {
				f(s.Metric, float64(s.Value))
			}
		}
	}
	inc := func(metric, by, extra string) string {
		return fmt.Sprintf("sum by (%s) (increase(%s%s[%s]))", by, metric, sel(extra), w)
	}
	s := &Summary{}
	each("count(specgate_authz_revocation_entries"+sel("")+")", func(_ model.Metric, v float64) { s.Replicas = int(v) })
	if qerr == nil && s.Replicas == 0 {
		return nil, fmt.Errorf("stats: prometheus at %s holds no specgate_authz metrics%s", url, map[bool]string{true: " matching " + selector}[selector != ""])
	}
	denied := map[string]float64{}
	each(inc("specgate_authz_checks_total", "decision, reason", ""), func(l model.Metric, v float64) {
		s.Decisions = append(s.Decisions, Decision{string(l["decision"]), string(l["reason"]), v})
		if l["decision"] == "allow" {
			s.Allowed += v
		} else {
			s.Denied += v
		}
	})
	s.Checks = s.Allowed + s.Denied
	each(inc("specgate_authz_checks_total", "route", `decision="deny"`), func(l model.Metric, v float64) { denied[string(l["route"])] += v })
	s.DeniedRoutes = counts(denied)
	refused := map[string]map[string]float64{"iss": {}, "aud": {}}
	each(inc("specgate_authz_refused_claims_total", "claim, value", ""), func(l model.Metric, v float64) {
		if byValue := refused[string(l["claim"])]; byValue != nil {
			byValue[string(l["value"])] += v
		}
	})
	s.RefusedIssuers, s.RefusedAudiences = counts(refused["iss"]), counts(refused["aud"])
	var lat Latency
	var n float64
	for q, into := range map[string]*float64{"0.5": &lat.P50, "0.9": &lat.P90, "0.99": &lat.P99} {
		each(fmt.Sprintf("histogram_quantile(%s, %s)", q, inc("specgate_authz_check_duration_seconds_bucket", "le", "")), func(_ model.Metric, v float64) { *into = v })
	}
	each(inc("specgate_authz_check_duration_seconds_count", "", ""), func(_ model.Metric, v float64) { n = v })
	each(inc("specgate_authz_check_duration_seconds_sum", "", ""), func(_ model.Metric, v float64) { lat.Mean = v })
	if n > 0 {
		lat.Mean /= n
		s.Latency = &lat
	}
	each(inc("specgate_authz_token_cache_total", "result", ""), func(l model.Metric, v float64) {
		if l["result"] == "hit" {
			s.TokenCacheHits += v
		} else {
			s.TokenCacheMisses += v
		}
	})
	each(inc("specgate_authz_revocations_total", "", ""), func(_ model.Metric, v float64) { s.Revocations.Accepted = v })
	for metric, into := range map[string]*float64{"specgate_authz_revocation_entries": &s.Revocations.LiveEntries,
		"specgate_authz_bloom_fill_ratio": &s.Revocations.BloomFill, "specgate_authz_bloom_estimated_fp_rate": &s.Revocations.BloomFP} {
		each("max("+metric+sel("")+")", func(_ model.Metric, v float64) { *into = v })
	}
	issuers := map[string]*JWKS{}
	jwks := func(l model.Metric) *JWKS {
		iss := string(l["issuer"])
		if issuers[iss] == nil {
			issuers[iss] = &JWKS{Issuer: iss}
		}
		return issuers[iss]
	}
	each("min by (issuer) (specgate_authz_jwks_keys"+sel("")+")", func(l model.Metric, v float64) { jwks(l).Keys = v })
	each("min by (issuer) (specgate_authz_jwks_last_success_timestamp_seconds"+sel("")+")", func(l model.Metric, v float64) {
		if v > 0 {
			jwks(l).LastSuccess = time.Unix(int64(v), 0)
		}
	})
	each(inc("specgate_authz_jwks_refresh_total", "issuer, result", ""), func(l model.Metric, v float64) {
		if l["result"] == "ok" {
			jwks(l).FetchesOK += v
		} else {
			jwks(l).FetchErrors += v
		}
	})
	if qerr != nil {
		return nil, qerr
	}
	for _, iss := range slices.Sorted(maps.Keys(issuers)) {
		s.JWKS = append(s.JWKS, *issuers[iss])
	}
	sortDecisions(s.Decisions)
	s.Window = w
	return s, nil
}
