// Package stats turns the authorization service's /metrics into the readable summary that
// `specgate stats` prints.
package stats

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Summarize reads Prometheus text exposition from r and writes the summary to w.
func Summarize(r io.Reader, w io.Writer, now time.Time) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("stats: parse metrics: %w", err)
	}
	if _, ok := mfs["specgate_authz_checks_total"]; !ok {
		if _, ok := mfs["specgate_authz_check_duration_seconds"]; !ok {
			return fmt.Errorf("stats: no specgate_authz metrics (is this the authz HTTP port?)")
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()

	type row struct {
		key string
		n   float64
	}
	byReason := map[string]float64{}
	byDeniedRoute := map[string]float64{}
	var allow, deny float64
	for _, m := range metrics(mfs, "specgate_authz_checks_total") {
		v := m.GetCounter().GetValue()
		l := labels(m)
		byReason[l["decision"]+"\t"+l["reason"]] += v
		if l["decision"] == "allow" {
			allow += v
		} else {
			deny += v
			byDeniedRoute[l["route"]] += v
		}
	}
	sorted := func(m map[string]float64) []row {
		var rs []row
		for k, v := range m {
			rs = append(rs, row{k, v})
		}
		slices.SortFunc(rs, func(a, b row) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.key, b.key)) })
		return rs
	}
	total := allow + deny
	fmt.Fprintf(tw, "DECISIONS\t%.0f checks\tallow %.0f (%s)\tdeny %.0f (%s)\n", total, allow, pct(allow, total), deny, pct(deny, total))
	fmt.Fprintln(tw, "  decision\treason\tcount\tshare")
	for _, r := range sorted(byReason) {
		fmt.Fprintf(tw, "  %s\t%.0f\t%s\n", r.key, r.n, pct(r.n, total))
	}

	fmt.Fprintln(tw, "\nLATENCY (Check, estimated from the histogram)")
	if h := histogram(mfs, "specgate_authz_check_duration_seconds"); h != nil && h.GetSampleCount() > 0 {
		fmt.Fprintf(tw, "  p50\t%s\n  p90\t%s\n  p99\t%s\n  mean\t%s\n",
			dur(quantile(h, 0.50)), dur(quantile(h, 0.90)), dur(quantile(h, 0.99)),
			dur(h.GetSampleSum()/float64(h.GetSampleCount())))
	} else {
		fmt.Fprintln(tw, "  no checks yet")
	}

	var denials []row
	for _, r := range sorted(byReason) {
		if reason, ok := strings.CutPrefix(r.key, "deny\t"); ok {
			denials = append(denials, row{reason, r.n})
		}
	}
	fmt.Fprintln(tw, "\nTOP DENIAL REASONS")
	for _, r := range denials[:min(5, len(denials))] {
		fmt.Fprintf(tw, "  %s\t%.0f\t%s of denials\n", r.key, r.n, pct(r.n, deny))
	}
	if len(denials) == 0 {
		fmt.Fprintln(tw, "  none")
	}
	// top prints the five largest counts under a title; unnamed is the name of the "" key.
	top := func(title, unnamed string, counts map[string]float64) {
		fmt.Fprintln(tw, "\n"+title)
		rs := sorted(counts)
		for _, r := range rs[:min(5, len(rs))] {
			name := r.key
			if name == "" {
				name = unnamed
			}
			fmt.Fprintf(tw, "  %s\t%.0f\n", name, r.n)
		}
		if len(rs) == 0 {
			fmt.Fprintln(tw, "  none")
		}
	}
	top("TOP DENIED ROUTES", "(no route id)", byDeniedRoute)

	// What the refused tokens said they were (unverified): a wrong issuer or audience is the
	// usual misconfiguration, e.g. localhost vs 127.0.0.1 in a Keycloak issuer.
	refused := map[string]map[string]float64{"iss": {}, "aud": {}}
	for _, m := range metrics(mfs, "specgate_authz_refused_claims_total") {
		l := labels(m)
		if byValue := refused[l["claim"]]; byValue != nil {
			byValue[l["value"]] += m.GetCounter().GetValue()
		}
	}
	top("TOP REFUSED ISSUERS (iss of refused tokens)", "(none)", refused["iss"])
	top("TOP REFUSED AUDIENCES (aud of refused tokens)", "(none)", refused["aud"])

	var hit, miss float64
	for _, m := range metrics(mfs, "specgate_authz_token_cache_total") {
		if labels(m)["result"] == "hit" {
			hit += m.GetCounter().GetValue()
		} else {
			miss += m.GetCounter().GetValue()
		}
	}
	fmt.Fprintf(tw, "\nTOKEN CACHE\thits %.0f\tmisses %.0f\thit ratio %s\n", hit, miss, pct(hit, hit+miss))

	fmt.Fprintln(tw, "\nREVOCATIONS")
	fmt.Fprintf(tw, "  accepted by this replica\t%.0f\n", scalar(mfs, "specgate_authz_revocations_total"))
	fmt.Fprintf(tw, "  live entries\t%.0f\n", scalar(mfs, "specgate_authz_revocation_entries"))
	fmt.Fprintf(tw, "  bloom fill\t%.4f%%\n", 100*scalar(mfs, "specgate_authz_bloom_fill_ratio"))
	fmt.Fprintf(tw, "  bloom est. false positives\t%.3g\n", scalar(mfs, "specgate_authz_bloom_estimated_fp_rate"))

	fmt.Fprintln(tw, "\nJWKS")
	type jwks struct{ keys, ok, errs, last float64 }
	issuers := map[string]*jwks{}
	get := func(m *dto.Metric) *jwks {
		iss := labels(m)["issuer"]
		if issuers[iss] == nil {
			issuers[iss] = &jwks{}
		}
		return issuers[iss]
	}
	for _, m := range metrics(mfs, "specgate_authz_jwks_keys") {
		get(m).keys = m.GetGauge().GetValue()
	}
	for _, m := range metrics(mfs, "specgate_authz_jwks_last_success_timestamp_seconds") {
		get(m).last = m.GetGauge().GetValue()
	}
	for _, m := range metrics(mfs, "specgate_authz_jwks_refresh_total") {
		if labels(m)["result"] == "ok" {
			get(m).ok += m.GetCounter().GetValue()
		} else {
			get(m).errs += m.GetCounter().GetValue()
		}
	}
	names := make([]string, 0, len(issuers))
	for k := range issuers {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Fprintln(tw, "  issuer\tkeys\tfetches ok\tfetch errors\tlast success\tstate")
	for _, n := range names {
		j := issuers[n]
		last, state := "never", "NO KEYS: tokens refused"
		if j.last > 0 {
			last = now.Sub(time.Unix(int64(j.last), 0)).Round(time.Second).String() + " ago"
		}
		if j.keys > 0 {
			state = "ok"
		}
		fmt.Fprintf(tw, "  %s\t%.0f\t%.0f\t%.0f\t%s\t%s\n", n, j.keys, j.ok, j.errs, last, state)
	}
	if len(names) == 0 {
		fmt.Fprintln(tw, "  no issuers configured")
	}
	return nil
}

func metrics(mfs map[string]*dto.MetricFamily, name string) []*dto.Metric {
	if mf, ok := mfs[name]; ok {
		return mf.GetMetric()
	}
	return nil
}

func scalar(mfs map[string]*dto.MetricFamily, name string) float64 {
	var v float64
	for _, m := range metrics(mfs, name) {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return v
}

func histogram(mfs map[string]*dto.MetricFamily, name string) *dto.Histogram {
	ms := metrics(mfs, name)
	if len(ms) == 0 {
		return nil
	}
	return ms[0].GetHistogram()
}

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
