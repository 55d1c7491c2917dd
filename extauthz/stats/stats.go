// Package stats turns the authorization service's /metrics, of one replica or of all of them,
// into the summary that `specgate stats` prints, as text or JSON.
package stats

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Summary is what the authz replicas' counters say since each started: decisions, latency,
// what was refused, the token cache, revocations and each issuer's JWKS.
type Summary struct {
	Replicas         int        `json:"replicas"`
	Window           string     `json:"window,omitempty"` // from Prometheus: the counts are of this last window`
	Checks           float64    `json:"checks"`
	Allowed          float64    `json:"allowed"`
	Denied           float64    `json:"denied"`
	Decisions        []Decision `json:"decisions"`         // by decision and reason, largest first
	Latency          *Latency   `json:"latency,omitempty"` // nil before the first check
	DeniedRoutes     []Count    `json:"deniedRoutes"`
	RefusedIssuers   []Count    `json:"refusedIssuers"`   // iss of refused tokens (unverified)
	RefusedAudiences []Count    `json:"refusedAudiences"` // aud of refused tokens (unverified)
	TokenCacheHits   float64    `json:"tokenCacheHits"`
	TokenCacheMisses float64    `json:"tokenCacheMisses"`
	Revocations      Revocation `json:"revocations"`
	JWKS             []JWKS     `json:"jwks"`
}

// Decision is a count of checks with one decision and reason.
type Decision struct {
	Decision string  `json:"decision"`
	Reason   string  `json:"reason"`
	Count    float64 `json:"count"`
}

// Count is a count under a name (a route id, an issuer, an audience).
type Count struct {
	Name  string  `json:"name"`
	Count float64 `json:"count"`
}

// Latency of a Check, estimated from the histogram of every replica, in seconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
}

// Revocation is the revocation state: accepted sums the replicas; the set's figures are the
// largest replica's (every replica holds the same set once it has synced).
type Revocation struct {
	Accepted    float64 `json:"accepted"`
	LiveEntries float64 `json:"liveEntries"`
	BloomFill   float64 `json:"bloomFill"`
	BloomFP     float64 `json:"bloomEstimatedFalsePositives"`
}

// JWKS is one issuer's key set over the replicas: the fewest keys any replica holds, fetches
// summed, and the oldest last success (0: some replica never fetched).
type JWKS struct {
	Issuer      string    `json:"issuer"`
	Keys        float64   `json:"keys"`
	FetchesOK   float64   `json:"fetchesOK"`
	FetchErrors float64   `json:"fetchErrors"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Read summarizes the Prometheus text exposition of each replica's /metrics.
func Read(replicas ...io.Reader) (*Summary, error) {
	var all []map[string]*dto.MetricFamily
	for i, r := range replicas {
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(r)
		if err != nil {
			return nil, fmt.Errorf("stats: parse the metrics of replica %d: %w", i+1, err)
		}
		_, checks := mfs["specgate_authz_checks_total"]
		_, durations := mfs["specgate_authz_check_duration_seconds"]
		if !checks && !durations {
			return nil, fmt.Errorf("stats: replica %d has no specgate_authz metrics (is this the authz HTTP port?)", i+1)
		}
		all = append(all, mfs)
	}
	each := func(name string, f func(m *dto.Metric, l map[string]string)) {
		for _, mfs := range all {
			for _, m := range mfs[name].GetMetric() {
				f(m, labels(m))
			}
		}
	}
	s := &Summary{Replicas: len(all)}
	decisions, denied := map[[2]string]float64{}, map[string]float64{}
	each("specgate_authz_checks_total", func(m *dto.Metric, l map[string]string) {
		v := m.GetCounter().GetValue()
		decisions[[2]string{l["decision"], l["reason"]}] += v
		if l["decision"] == "allow" {
			s.Allowed += v
		} else {
			s.Denied += v
			denied[l["route"]] += v
		}
	})
	s.Checks = s.Allowed + s.Denied
	for k, v := range decisions {
		s.Decisions = append(s.Decisions, Decision{k[0], k[1], v})
	}
	sortDecisions(s.Decisions)
	s.DeniedRoutes = counts(denied)

	var buckets map[float64]uint64 // upper bound → cumulative count, summed over replicas
	var sum float64
	var n uint64
	each("specgate_authz_check_duration_seconds", func(m *dto.Metric, _ map[string]string) {
		h := m.GetHistogram()
		if buckets == nil {
			buckets = map[float64]uint64{}
		}
		for _, b := range h.GetBucket() {
			buckets[b.GetUpperBound()] += b.GetCumulativeCount()
		}
		sum, n = sum+h.GetSampleSum(), n+h.GetSampleCount()
	})
	if n > 0 {
		h := &dto.Histogram{SampleCount: &n}
		for _, ub := range slices.Sorted(maps.Keys(buckets)) {
			h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: &ub, CumulativeCount: ptr(buckets[ub])})
		}
		s.Latency = &Latency{P50: quantile(h, 0.5), P90: quantile(h, 0.9), P99: quantile(h, 0.99), Mean: sum / float64(n)}
	}

	refused := map[string]map[string]float64{"iss": {}, "aud": {}}
	each("specgate_authz_refused_claims_total", func(m *dto.Metric, l map[string]string) {
		if byValue := refused[l["claim"]]; byValue != nil {
			byValue[l["value"]] += m.GetCounter().GetValue()
		}
	})
	s.RefusedIssuers, s.RefusedAudiences = counts(refused["iss"]), counts(refused["aud"])

	each("specgate_authz_token_cache_total", func(m *dto.Metric, l map[string]string) {
		if l["result"] == "hit" {
			s.TokenCacheHits += m.GetCounter().GetValue()
		} else {
			s.TokenCacheMisses += m.GetCounter().GetValue()
		}
	})
	each("specgate_authz_revocations_total", func(m *dto.Metric, _ map[string]string) { s.Revocations.Accepted += m.GetCounter().GetValue() })
	for name, into := range map[string]*float64{"specgate_authz_revocation_entries": &s.Revocations.LiveEntries,
		"specgate_authz_bloom_fill_ratio": &s.Revocations.BloomFill, "specgate_authz_bloom_estimated_fp_rate": &s.Revocations.BloomFP} {
		each(name, func(m *dto.Metric, _ map[string]string) { *into = max(*into, m.GetGauge().GetValue()) })
	}

	issuers := map[string]*JWKS{}
	replicasWith := map[string]map[int]bool{} // issuer → replicas that report a last success
	for i, mfs := range all {
		for _, m := range mfs["specgate_authz_jwks_keys"].GetMetric() {
			iss := labels(m)["issuer"]
			j := issuers[iss]
			if j == nil {
				j = &JWKS{Issuer: iss, Keys: math.Inf(1)}
				issuers[iss] = j
			}
			j.Keys = min(j.Keys, m.GetGauge().GetValue())
		}
		for _, m := range mfs["specgate_authz_jwks_last_success_timestamp_seconds"].GetMetric() {
			iss := labels(m)["issuer"]
			if j := issuers[iss]; j != nil && m.GetGauge().GetValue() > 0 {
				at := time.Unix(int64(m.GetGauge().GetValue()), 0)
				if j.LastSuccess.IsZero() || at.Before(j.LastSuccess) {
					j.LastSuccess = at
				}
				if replicasWith[iss] == nil {
					replicasWith[iss] = map[int]bool{}
				}
				replicasWith[iss][i] = true
			}
		}
	}
	each("specgate_authz_jwks_refresh_total", func(m *dto.Metric, l map[string]string) {
		if j := issuers[l["issuer"]]; j != nil {
			if l["result"] == "ok" {
				j.FetchesOK += m.GetCounter().GetValue()
			} else {
				j.FetchErrors += m.GetCounter().GetValue()
			}
		}
	})
	for _, iss := range slices.Sorted(maps.Keys(issuers)) {
		j := issuers[iss]
		if len(replicasWith[iss]) < len(all) {
			j.LastSuccess = time.Time{} // some replica never fetched
		}
		s.JWKS = append(s.JWKS, *j)
	}
	return s, nil
}

// WriteJSON writes s as one JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteText writes s as the readable summary; now dates the JWKS fetches.
func (s *Summary) WriteText(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch {
	case s.Window != "":
		fmt.Fprintf(tw, "%d authz replicas, the last %s (Prometheus)\n\n", s.Replicas, s.Window)
	case s.Replicas > 1:
		fmt.Fprintf(tw, "%d authz replicas, each counting since it started\n\n", s.Replicas)
	}
	fmt.Fprintf(tw, "DECISIONS\t%.0f checks\tallow %.0f (%s)\tdeny %.0f (%s)\n", s.Checks, s.Allowed, pct(s.Allowed, s.Checks), s.Denied, pct(s.Denied, s.Checks))
	fmt.Fprintln(tw, "  decision\treason\tcount\tshare")
	for _, d := range s.Decisions {
		fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%s\n", d.Decision, d.Reason, d.Count, pct(d.Count, s.Checks))
	}

	fmt.Fprintln(tw, "\nLATENCY (Check, estimated from the histogram)")
	if l := s.Latency; l != nil {
		fmt.Fprintf(tw, "  p50\t%s\n  p90\t%s\n  p99\t%s\n  mean\t%s\n", dur(l.P50), dur(l.P90), dur(l.P99), dur(l.Mean))
	} else {
		fmt.Fprintln(tw, "  no checks yet")
	}

	fmt.Fprintln(tw, "\nTOP DENIAL REASONS")
	shown := 0
	for _, d := range s.Decisions {
		if d.Decision == "deny" && shown < 5 {
			fmt.Fprintf(tw, "  %s\t%.0f\t%s of denials\n", d.Reason, d.Count, pct(d.Count, s.Denied))
			shown++
		}
	}
	if shown == 0 {
		fmt.Fprintln(tw, "  none")
	}
	// top prints the five largest counts under a title; unnamed is the name of the "" key.
	top := func(title, unnamed string, cs []Count) {
		fmt.Fprintln(tw, "\n"+title)
		for _, c := range cs[:min(5, len(cs))] {
			fmt.Fprintf(tw, "  %s\t%.0f\n", cmp.Or(c.Name, unnamed), c.Count)
		}
		if len(cs) == 0 {
			fmt.Fprintln(tw, "  none")
		}
	}
	top("TOP DENIED ROUTES", "(no route id)", s.DeniedRoutes)
	// A wrong issuer or audience is the usual misconfiguration (localhost vs 127.0.0.1 in a
	// Keycloak issuer): what the refused tokens said they were, unverified.
	top("TOP REFUSED ISSUERS (iss of refused tokens)", "(none)", s.RefusedIssuers)
	top("TOP REFUSED AUDIENCES (aud of refused tokens)", "(none)", s.RefusedAudiences)

	hits, misses := s.TokenCacheHits, s.TokenCacheMisses
	fmt.Fprintf(tw, "\nTOKEN CACHE\thits %.0f\tmisses %.0f\thit ratio %s\n", hits, misses, pct(hits, hits+misses))

	r := s.Revocations
	fmt.Fprintln(tw, "\nREVOCATIONS")
	fmt.Fprintf(tw, "  accepted\t%.0f\n", r.Accepted)
	fmt.Fprintf(tw, "  live entries\t%.0f\n", r.LiveEntries)
	fmt.Fprintf(tw, "  bloom fill\t%.4f%%\n", 100*r.BloomFill)
	fmt.Fprintf(tw, "  bloom est. false positives\t%.3g\n", r.BloomFP)

	fmt.Fprintln(tw, "\nJWKS")
	fmt.Fprintln(tw, "  issuer\tkeys\tfetches ok\tfetch errors\tlast success\tstate")
	for _, j := range s.JWKS {
		last, state := "never", "NO KEYS: tokens refused"
		if !j.LastSuccess.IsZero() {
			last = now.Sub(j.LastSuccess).Round(time.Second).String() + " ago"
		}
		if j.Keys > 0 {
			state = "ok"
		}
		fmt.Fprintf(tw, "  %s\t%.0f\t%.0f\t%.0f\t%s\t%s\n", j.Issuer, j.Keys, j.FetchesOK, j.FetchErrors, last, state)
	}
	if len(s.JWKS) == 0 {
		fmt.Fprintln(tw, "  no issuers configured")
	}
	return tw.Flush()
}

// sortDecisions puts the largest counts first.
func sortDecisions(ds []Decision) {
	slices.SortFunc(ds, func(a, b Decision) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Decision+a.Reason, b.Decision+b.Reason))
	})
}

// counts are m's entries, largest first.
func counts(m map[string]float64) []Count {
	out := []Count{}
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Name, b.Name)) })
	return out
}

func ptr[T any](v T) *T { return &v }

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// quantile interpolates linearly inside the bucket that holds the q-th observation, as
// Prometheus' histogram_quantile does.
func quantile(h *dto.Histogram, q float64) float64 {
	rank := q * float64(h.GetSampleCount())
	var prevCount, prevBound float64
	for _, b := range h.GetBucket() {
		c, ub := float64(b.GetCumulativeCount()), b.GetUpperBound()
		if c >= rank {
			if math.IsInf(ub, 1) {
				return prevBound
			}
			if c == prevCount {
				return ub
			}
			return prevBound + (ub-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevCount, prevBound = c, ub
	}
	return prevBound
}

func pct(n, total float64) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*n/total)
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Nanosecond).String()
}
