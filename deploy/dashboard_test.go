package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// codeMetrics are the metric names the roles register, read from their source: Name fields of
// the collectors and extauthz's scrape-time gauges.
func codeMetrics(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?:Name:\s*|\.gauge\()"(specgate_[a-z0-9_]+)"`)
	var names []string
	for _, dir := range []string{"../xds", "../extauthz", "../ratelimit"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllSubmatch(b, -1) {
				names = append(names, string(m[1]))
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 20 {
		t.Fatalf("found only %d metrics in the code: did the registration style change? %v", len(names), names)
	}
	return names
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []target                 `json:"targets"`
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

// The dashboard queries only metrics that exist, covers what operators need, and every panel
// is wired to the data source variable.
func TestDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../dashboards/specgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	known := codeMetrics(t)
	metricRe := regexp.MustCompile(`\bspecgate_[a-z0-9_]+`)
	quoted := regexp.MustCompile(`"[^"]*"`) // label values such as envoy_cluster_name="specgate_authz"
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q overflows the 24-column grid", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 || p.Description == "" {
			t.Errorf("panel %q: needs the ${datasource} variable, targets and a description", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced expression %s", p.Title, tg.Expr)
			}
			if !strings.Contains(tg.Expr, `namespace=~"$namespace"`) {
				t.Errorf("panel %q: expression ignores the namespace variable: %s", p.Title, tg.Expr)
			}
			for _, m := range metricRe.FindAllString(quoted.ReplaceAllString(tg.Expr, `""`), -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if s, ok := strings.CutSuffix(m, suffix); ok && slices.Contains(known, s) {
						base = s
					}
				}
				if !slices.Contains(known, base) {
					t.Errorf("panel %q queries %s, which no role exports", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	for _, m := range []string{
		"specgate_authz_checks_total", "specgate_authz_check_duration_seconds", "specgate_authz_revocations_total",
		"specgate_authz_jwks_last_success_timestamp_seconds", "specgate_authz_jwks_refresh_total",
		"specgate_ratelimit_decisions_total", "specgate_ratelimit_store_errors_total",
		"specgate_xds_snapshot_info", "specgate_xds_pushes_total", "specgate_xds_nacks_total",
	} {
		if !used[m] {
			t.Errorf("the dashboard has no panel on %s", m)
		}
	}
	// Per route: the backends' latency and authz's decisions (the route id is the label).
	perRoute := map[string]*regexp.Regexp{
		"backend latency by route": regexp.MustCompile(`histogram_quantile\(0\.99, sum by \(envoy_route, le\) \(rate\(envoy_vhost_route_upstream_rq_time_bucket`),
		"authz decisions by route": regexp.MustCompile(`sum by \(route, decision\) \(rate\(specgate_authz_checks_total`),
	}
	for what, re := range perRoute {
		if !slices.ContainsFunc(d.Panels, func(p panel) bool {
			return slices.ContainsFunc(p.Targets, func(tg target) bool { return re.MatchString(tg.Expr) })
		}) {
			t.Errorf("the dashboard has no panel of %s", what)
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Contains(vars, "datasource") || !slices.Contains(vars, "namespace") {
		t.Errorf("template variables %v: want datasource and namespace", vars)
	}
}

// docs/observability.md names every metric the roles export.
func TestMetricsReference(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range codeMetrics(t) {
		if !strings.Contains(string(b), "`"+m+"`") {
			t.Errorf("docs/observability.md does not document %s", m)
		}
	}
}
