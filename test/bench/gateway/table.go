package main

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// table is the one table make bench prints: each figure next to its peer, and the ratio.
type table struct {
	rows     [][6]string
	problems []string
}

func (t *table) section(title string) { t.rows = append(t.rows, [6]string{"**" + title + "**"}) }

func (t *table) row(cells ...string) {
	var r [6]string
	copy(r[:], cells)
	t.rows = append(t.rows, r)
}

func (t *table) markdown() string {
	head := [6]string{"Figure", "Measured", "Peer", "Peer's", "Ratio", "Goal"}
	all := append([][6]string{head, {}}, t.rows...)
	var w [6]int
	for _, r := range all {
		for i, c := range r {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for n, r := range all {
		b.WriteString("|")
		for i, c := range r {
			if n == 1 {
				b.WriteString(" " + strings.Repeat("-", w[i]) + " |")
				continue
			}
			b.WriteString(" " + c + strings.Repeat(" ", w[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// failures are measurements that cannot be trusted (failed requests), not missed goals.
func (t *table) failures() string { return strings.Join(t.problems, "; ") }

// median of one figure over the rounds.
func median[T int64 | float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

type med struct {
	rps      float64
	p50, p99 time.Duration
}

func medians(ss []sample) med {
	var rps []float64
	var p50, p99 []int64
	for _, s := range ss {
		rps, p50, p99 = append(rps, s.rps), append(p50, int64(s.p50)), append(p99, int64(s.p99))
	}
	return med{median(rps), time.Duration(median(p50)), time.Duration(median(p99))}
}

// check records runs with failed requests: above 0.1% the figures would flatter the variant.
func (t *table) check(name string, ss []sample) {
	var failed, total uint64
	for _, s := range ss {
		failed, total = failed+s.failed, total+s.requests
	}
	if total == 0 || failed*1000 > total {
		t.problems = append(t.problems, fmt.Sprintf("%s: %d of %d requests failed", name, failed, total))
	}
}

func rps(x float64) string { return commas(int64(x+0.5)) + " rps" }

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ms(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64)
	case d >= 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64)
	default:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64)
	}
}

func lat(m med) string { return ms(m.p50) + " / " + ms(m.p99) + " ms" }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}

func goal(text string, ok bool) string {
	if ok {
		return text + ": met"
	}
	return text + ": **missed**"
}

func httpRows(t *table, o options, vs []*variant, closed, open map[string][]sample) {
	c, op := map[string]med{}, map[string]med{}
	label := map[string]string{}
	for _, v := range vs {
		t.check("HTTP "+v.key+" closed loop", closed[v.key])
		t.check("HTTP "+v.key+" open loop", open[v.key])
		c[v.key], op[v.key], label[v.key] = medians(closed[v.key]), medians(open[v.key]), v.label
	}
	pairs := [][2]string{{"authz", "none"}, {"authz+rl", "none"}, {"authz+cache", "none"}, {"authz+cache+rl", "none"}, {"jwt_authn", "none"},
		{"authz", "noop-ext_authz"}, {"noop-ext_authz", "jwt_authn"}, {"authz+cache", "authz"}, {"authz+log", "authz"},
		{"authz+trace1", "authz"}, {"authz+trace100", "authz"}, {"authz+log+trace1", "authz"},
		{"authz", "jwt_authn"}, {"authz+cache", "jwt_authn"}, {"authz+rl", "jwt_authn"}, {"authz+cache+rl", "jwt_authn"},
		{"wasm-noop", "none"}, {"wasm-noop", "jwt_authn"}, {"authz+plugin", "jwt_authn"}, {"authz+plugin", "authz"}}
	// The goals (specgate authz against jwt_authn) are judged with and without the cache, and
	// with the plugin (issue 30: ≥ 0.85×).
	goalRow := func(p [2]string) bool {
		p = oneToken(p)
		return p[1] == "jwt_authn" && (p[0] == "authz" || p[0] == "authz+cache")
	}
	pluginRow := func(p [2]string) bool { return oneToken(p) == [2]string{"authz+plugin", "jwt_authn"} }
	// Observability's goal: the access log and 1 % tracing together cost at most 10 % of rps.
	observed := [2]string{"authz+log+trace1", "authz"}
	t.section(fmt.Sprintf("Gateway, GET /orders/{id} with a token (one token; @zipf: %d tokens): rps at %d connections (closed loop), median of %d × %s", zipfTokens, o.conc, o.rounds, o.dur))
	pairs = withTwins(pairs, label)
	for _, p := range pairs {
		g := ""
		if goalRow(p) {
			g = goal("≥ 0.8×", c[p[0]].rps >= 0.8*c[p[1]].rps)
		}
		if oneToken(p) == observed {
			g = goal("≥ 0.9×", c[p[0]].rps >= 0.9*c[p[1]].rps)
		}
		if pluginRow(p) {
			g = goal("≥ 0.85×", c[p[0]].rps >= 0.85*c[p[1]].rps)
		}
		rpsRow(t, label[p[0]], label[p[1]], c[p[0]], c[p[1]], g)
	}
	t.section(fmt.Sprintf("Gateway, same request: latency p50 / p99 at %d rps (open loop), median of %d × %s", o.rate, o.rounds, o.dur))
	for _, p := range pairs {
		g := ""
		if goalRow(p) {
			g = goal("p99 ≤ 1.3×", float64(op[p[0]].p99) <= 1.3*float64(op[p[1]].p99))
		}
		latRow(t, label[p[0]], label[p[1]], op[p[0]], op[p[1]], g)
	}
	otherLoadRows(t, o, c, op, label)
}

// withTwins is pairs, each followed by the same pair of the variants' many-token twins (a peer
// without a twin, which does not read tokens, stands for its own), without the pairs of a
// variant not measured (-only).
func withTwins(pairs [][2]string, label map[string]string) [][2]string {
	var out [][2]string
	for _, p := range pairs {
		twin := [2]string{p[0] + zipfSuffix, p[1] + zipfSuffix}
		if label[twin[1]] == "" {
			twin[1] = p[1]
		}
		for _, q := range [][2]string{p, twin} {
			if label[q[0]] != "" && label[q[1]] != "" {
				out = append(out, q)
			}
		}
	}
	return out
}

// oneToken is p without the twins' suffix.
func oneToken(p [2]string) [2]string {
	return [2]string{strings.TrimSuffix(p[0], zipfSuffix), strings.TrimSuffix(p[1], zipfSuffix)}
}

// rpsRow puts a's closed-loop rps against its peer b's; latRow their open-loop p50 / p99.
func rpsRow(t *table, name, peer string, a, b med, goal string) {
	t.row(name, rps(a.rps), peer, rps(b.rps), ratio(a.rps, b.rps), goal)
}

func latRow(t *table, name, peer string, a, b med, goal string) {
	t.row(name, lat(a), peer, lat(b), ratio(float64(a.p50), float64(b.p50))+" / "+ratio(float64(a.p99), float64(b.p99)), goal)
}

// otherLoadRows: anonymous requests without a token through specgate's tokenless routes
// against bare Envoy, and a storefront's mix against the same mix behind jwt_authn and bare
// Envoy (issue 15's goals).
func otherLoadRows(t *table, o options, c, op map[string]med, label map[string]string) {
	// minRPS and maxP99 are the goals of a against b, as ratios; 0: none.
	type pair struct {
		a, b           string
		minRPS, maxP99 float64
	}
	rows := func(pairs ...pair) {
		for _, p := range pairs {
			for _, q := range withTwins([][2]string{{p.a, p.b}}, label) {
				g := ""
				if p.minRPS > 0 {
					g = goal(fmt.Sprintf("≥ %g×", p.minRPS), c[q[0]].rps >= p.minRPS*c[q[1]].rps)
				}
				rpsRow(t, label[q[0]]+", rps", label[q[1]], c[q[0]], c[q[1]], g)
				g = ""
				if p.maxP99 > 0 {
					g = goal(fmt.Sprintf("p99 ≤ %g×", p.maxP99), float64(op[q[0]].p99) <= p.maxP99*float64(op[q[1]].p99))
				}
				latRow(t, label[q[0]]+", p50 / p99", label[q[1]], op[q[0]], op[q[1]], g)
			}
		}
	}
	t.section(fmt.Sprintf("Anonymous GET /catalog/{id} without a token: rps at %d connections, latency at %d rps, median of %d × %s", o.conc, o.rate, o.rounds, o.dur))
	rows(pair{"catalog-specgate", "catalog-none", 0.9, 1.2})
	t.section(fmt.Sprintf("Storefront mix, 80 %% of the above (with a per-IP limit) + 20 %% GET /orders/{id} with a token: rps at %d connections, latency at %d rps", o.conc, o.rate))
	rows(pair{"mix-specgate", "mix-jwt_authn", 0.85, 0}, pair{"mix-specgate+cache", "mix-jwt_authn", 0.85, 0},
		pair{"mix-specgate+plugin", "mix-jwt_authn", 0.85, 0},
		pair{"mix-specgate", "mix-none", 0, 0}, pair{"mix-specgate+cache", "mix-none", 0, 0}, pair{"mix-jwt_authn", "mix-none", 0, 0})
	t.section(fmt.Sprintf("POST /shops/{shop}/orders with a 2 KB JSON order and a token, validated against the same unvalidated: rps at %d connections, latency at %d rps", o.conc, o.rate))
	rows(pair{"post+validate", "post", 0.8, 0})
}

func grpcRows(t *table, o options, r grpcResult) {
	for k := range r.closed {
		t.check("gRPC Check "+k+" closed loop", r.closed[k])
		t.check("gRPC Check "+k+" open loop", r.open[k])
	}
	sc, nc := medians(r.closed["specgate"]), medians(r.closed["noop"])
	so, no := medians(r.open["specgate"]), medians(r.open["noop"])
	t.section(fmt.Sprintf("specgate authz, gRPC Check on loopback, cached token, 2 connections, median of %d × %s", o.rounds, o.dur))
	peer := "no-op Check server (gRPC floor)"
	rpsRow(t, fmt.Sprintf("rps at %d callers (closed loop)", o.grpcConc), peer, sc, nc, "")
	latRow(t, fmt.Sprintf("p50 / p99 at %d callers", o.grpcConc), peer, sc, nc, "")
	sCPU, nCPU := median(r.cpu["specgate"]), median(r.cpu["noop"])
	t.row(fmt.Sprintf("server CPU per call at %d callers", o.grpcConc), fmt.Sprintf("%.0f µs", sCPU), peer, fmt.Sprintf("%.0f µs", nCPU), ratio(sCPU, nCPU))
	latRow(t, fmt.Sprintf("p50 / p99 at %d calls/s (open loop)", o.grpcRate), peer, so, no, "")
}

// rateLimitRows reads test/bench/ratelimit/compare.sh's medians:
//
//	== 1000 distinct clients, limit never reached (c=64, n=100000, d=5s, rounds=3)
//	-- medians
//	specgate           rps=21084 p50_us=2460 p99_us=9900
func rateLimitRows(t *table, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type fig struct{ rps, p50, p99 float64 }
	var (
		scenario string
		params   string
		got      = map[string]map[string]fig{}
		order    []string
	)
	line := regexp.MustCompile(`^(\S+)\s+rps=(\d+) p50_us=(\d+) p99_us=(\d+)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if s, ok := strings.CutPrefix(l, "== "); ok {
			scenario, params, _ = strings.Cut(s, " (")
			params = strings.TrimSuffix(params, ")")
			got[scenario] = map[string]fig{}
			order = append(order, scenario)
			continue
		}
		if strings.Contains(l, "errors=") && !strings.Contains(l, "errors=0") {
			t.problems = append(t.problems, "ratelimit compare: "+l)
		}
		if m := line.FindStringSubmatch(l); m != nil && scenario != "" {
			var x fig
			x.rps, _ = strconv.ParseFloat(m[2], 64)
			x.p50, _ = strconv.ParseFloat(m[3], 64)
			x.p99, _ = strconv.ParseFloat(m[4], 64)
			got[scenario][m[1]] = x
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(order) == 0 {
		return fmt.Errorf("%s: no ratelimit results", path)
	}
	cell := func(x fig) string {
		return fmt.Sprintf("%s (p50 %s / p99 %s ms)", rps(x.rps), ms(time.Duration(x.p50)*time.Microsecond), ms(time.Duration(x.p99)*time.Microsecond))
	}
	for _, s := range order {
		t.section("specgate ratelimit vs envoyproxy/ratelimit, ShouldRateLimit on the same Redis: " + s + " (" + params + ", medians)")
		sg, ok := got[s]["specgate"]
		if !ok {
			return fmt.Errorf("%s: no specgate result for %q", path, s)
		}
		for _, p := range []struct{ key, label string }{{"envoyproxy", "envoyproxy/ratelimit"}, {"envoyproxy-tuned", "envoyproxy/ratelimit, pipeline window + local cache"}} {
			x, ok := got[s][p.key]
			if !ok {
				continue
			}
			g := ""
			if p.key == "envoyproxy" {
				g = goal("≥ 1.5×", sg.rps >= 1.5*x.rps)
			}
			t.row("specgate ratelimit (Redis)", cell(sg), p.label, cell(x), ratio(sg.rps, x.rps), g)
		}
		if c, ok := got[s]["specgate-cluster"]; ok {
			const label = "specgate ratelimit (Redis Cluster, 3 shards)"
			if x, ok := got[s]["envoyproxy-cluster"]; ok {
				t.row(label, cell(c), "envoyproxy/ratelimit on the same cluster", cell(x), ratio(c.rps, x.rps), "")
			}
			t.row(label, cell(c), "specgate ratelimit (one Redis server)", cell(sg), ratio(c.rps, sg.rps), "")
		}
	}
	return nil
}

// goTestRows reads the go test output of the compiler and control-plane benchmarks and the
// push→live test (scripts/bench.sh runs them).
func goTestRows(t *table, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	bench := regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(\d+(?:\.\d+)?) ns/op(.*)$`)
	peak := regexp.MustCompile(`(\d+(?:\.\d+)?) peak-heap-MiB`)
	push := regexp.MustCompile(`push→live over (\d+) pushes: p50 (\S+), p99 \(max\) (\S+)$`)
	fails := regexp.MustCompile(`(\d+) requests during (\d+) pushes: (\d+) failed`)
	nsop := map[string]float64{}
	heap := map[string]string{}
	extra := map[string]map[string]float64{} // benchmark → unit → value (b.ReportMetric)
	unit := regexp.MustCompile(`(\d+(?:\.\d+)?) (\S+)`)
	var pushRow, failRow []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if m := bench.FindStringSubmatch(l); m != nil {
			nsop[m[1]], _ = strconv.ParseFloat(m[2], 64)
			if p := peak.FindStringSubmatch(m[3]); p != nil {
				heap[m[1]] = p[1]
			}
			extra[m[1]] = map[string]float64{}
			for _, u := range unit.FindAllStringSubmatch(m[3], -1) {
				extra[m[1]][u[2]], _ = strconv.ParseFloat(u[1], 64)
			}
		}
		if m := push.FindStringSubmatch(l); m != nil {
			p50, e1 := time.ParseDuration(m[2])
			p99, e2 := time.ParseDuration(m[3])
			if e1 != nil || e2 != nil {
				return fmt.Errorf("%s: %q", path, l)
			}
			pushRow = []string{"push → live p50 / p99 (max) over " + m[1] + " pushes, real Envoy",
				ms(p50) + " / " + ms(p99) + " ms", "goal", "p99 1000 ms", ratio(float64(p99), float64(time.Second)), goal("p99 < 1 s", p99 < time.Second)}
		}
		if m := fails.FindStringSubmatch(l); m != nil {
			failRow = []string{"requests failed during " + m[2] + " pushes under load", m[3] + " of " + m[1], "goal", "0", "", goal("0", m[3] == "0")}
		}
	}
	t.section("Control plane and compiler (go test, see the commands below the table)")
	for _, c := range []struct {
		name, label string
		budget      time.Duration
	}{
		{"BenchmarkCompile2000", "compile + translate + hash, 2,000 routes", 300 * time.Millisecond},
		{"BenchmarkCompile10000", "compile + translate + hash, 10,000 routes", 2 * time.Second},
		{"BenchmarkSnapshotBuild/routes=2000", "snapshot build (a push), 2,000 routes", 0},
		{"BenchmarkSnapshotBuild/routes=10000", "snapshot build (a push), 10,000 routes", 0},
		{"BenchmarkPushOneOfHundred/uncached", "push of 1 of 100 specs, 10,000 routes, every file re-read", 0},
		{"BenchmarkPushOneOfHundred/cached", "push of 1 of 100 specs, 10,000 routes, as the control plane runs (caches)", 300 * time.Millisecond},
	} {
		v, ok := nsop[c.name]
		if !ok {
			return fmt.Errorf("%s: no %s result", path, c.name)
		}
		d := time.Duration(v)
		cell := ms(d) + " ms"
		if h := heap[c.name]; h != "" {
			cell += " (peak heap " + h + " MiB)"
		}
		if c.budget == 0 {
			t.row(c.label, cell)
			continue
		}
		t.row(c.label, cell, "goal", ms(c.budget)+" ms", ratio(float64(d), float64(c.budget)), goal("< "+ms(c.budget)+" ms", d < c.budget))
	}
	if pushRow == nil || failRow == nil {
		return fmt.Errorf("%s: no push→live figures", path)
	}
	t.row(pushRow...)
	t.row(failRow...)
	if err := memoryRows(t, path, extra); err != nil {
		return err
	}
	return fanOutRows(t, path, extra)
}

// memoryRows: Envoy's memory per operation (BenchmarkEnvoyMemory), as compiled against the
// same routes with no per-route policy, and the goal of at most 25 KB per operation.
func memoryRows(t *table, path string, extra map[string]map[string]float64) error {
	t.section("Envoy's allocated memory per operation, routes over RDS (go test, see the commands below the table)")
	get := func(name string) (map[string]float64, error) {
		m, ok := extra["BenchmarkEnvoyMemory/"+name]
		if !ok {
			return nil, fmt.Errorf("%s: no BenchmarkEnvoyMemory/%s result", path, name)
		}
		return m, nil
	}
	kb := func(m map[string]float64) string {
		return fmt.Sprintf("%.1f KB (%.0f MB in all)", m["KB/operation"], m["MB-allocated"])
	}
	for _, ops := range []string{"1000", "10000"} {
		c, err := get("ops=" + ops + "/compiled")
		if err != nil {
			return err
		}
		n, err := get("ops=" + ops + "/no-per-route-policy")
		if err != nil {
			return err
		}
		t.row(fmt.Sprintf("synthetic fleet, %s operations, as compiled", commas(int64(c["operations"]))), kb(c),
			"the same routes, no per-route policy", kb(n), ratio(c["KB/operation"], n["KB/operation"]),
			goal("≤ 25 KB", c["KB/operation"] <= 25))
	}
	r, err := get("real-descriptions/compiled")
	if err != nil {
		return err
	}
	t.row(fmt.Sprintf("real descriptions (make specs), %s operations, as compiled", commas(int64(r["operations"]))), kb(r),
		"", "", "", goal("≤ 25 KB", r["KB/operation"] <= 25))
	return nil
}

// fanOutRows are the replica fan-out figures: revocation propagation to N authz replicas and
// one key counted by N ratelimit replicas (BenchmarkRevocationFanOut, BenchmarkReplicasOneKey).
func fanOutRows(t *table, path string, extra map[string]map[string]float64) error {
	t.section("Replicas sharing Redis (go test, see the commands below the table)")
	// each runs row for every sub-benchmark name/replicas=N of a benchmark.
	each := func(name string, replicas []string, row func(n string, m map[string]float64)) error {
		for _, n := range replicas {
			m, ok := extra[name+"/replicas="+n]
			if !ok {
				return fmt.Errorf("%s: no %s/replicas=%s result", path, name, n)
			}
			row(strings.Replace(n, "/cluster", " (3-shard cluster)", 1), m)
		}
		return nil
	}
	one := extra["BenchmarkRevocationFanOut/replicas=1"]
	msCell := func(m map[string]float64) string { return fmt.Sprintf("%.2f / %.2f ms", m["p50-ms"], m["p99-ms"]) }
	err := each("BenchmarkRevocationFanOut", []string{"1", "4", "8", "8/cluster"}, func(n string, m map[string]float64) {
		t.row("revocation: the API's 200 → the last of "+n+" authz replicas refusing, p50 / p99", msCell(m),
			"1 replica", msCell(one), ratio(m["p50-ms"], one["p50-ms"])+" / "+ratio(m["p99-ms"], one["p99-ms"]))
	})
	if err != nil {
		return err
	}
	return each("BenchmarkReplicasOneKey", []string{"1", "3", "6", "6/cluster"}, func(n string, m map[string]float64) {
		t.row("rate limit, one key, "+n+" ratelimit replicas: most admitted in a window (5× demand)",
			fmt.Sprintf("%.0f (%s calls/s)", m["admitted"], commas(int64(m["calls/s"]))), "limit", fmt.Sprintf("%.0f", m["limit"]),
			ratio(m["admitted"], m["limit"]), goal("≤ limit", m["admitted"] <= m["limit"]))
	})
}

func cpuRows(t *table, o options, vs []*variant, cpu map[string][]cpuSample) {
	meds := map[string]cpuSample{}
	for _, v := range vs {
		var m cpuSample
		for i := range m {
			var xs []float64
			for _, c := range cpu[v.key] {
				xs = append(xs, c[i])
			}
			m[i] = median(xs)
		}
		meds[v.key] = m
	}
	total := func(c cpuSample) float64 { return c[0] + c[1] + c[2] + c[4] }
	cell := func(c cpuSample) string {
		s := fmt.Sprintf("%.0f µs (Envoy %.0f", total(c), c[0])
		if c[1] >= 0.5 {
			s += fmt.Sprintf(" + ext_authz server %.0f", c[1])
		}
		if c[2] >= 0.5 {
			s += fmt.Sprintf(" + ratelimit %.0f", c[2])
		}
		if c[4] >= 0.5 {
			s += fmt.Sprintf(" + validate %.0f", c[4])
		}
		return s + ")"
	}
	t.section(fmt.Sprintf("CPU per request in the closed-loop runs (from /proc; the backend's %.0f µs and the load generator's not counted)", meds[vs[0].key][3]))
	label := map[string]string{}
	for _, v := range vs {
		label[v.key] = v.label
		if v.load != "" {
			label[v.key] += " (" + v.load + ")"
		}
	}
	for _, v := range vs {
		peer := cmp.Or(v.cpuPeer, vs[0].key)
		if v.key == peer || label[peer] == "" {
			continue
		}
		g := ""
		if v.wasm != "" { // the Wasm plugin's spike gate: its floor within 1.3× jwt_authn's Envoy CPU
			g = goal("Envoy ≤ 1.3× (gate)", meds[v.key][0] <= 1.3*meds[peer][0])
		}
		if v.authz == authzPlugin && v.load == "" { // issue 30: the plugin's Envoy CPU within 1.3× jwt_authn's
			g = goal("Envoy ≤ 1.3×", meds[v.key][0] <= 1.3*meds[peer][0])
		}
		t.row(label[v.key], cell(meds[v.key]), label[peer], cell(meds[peer]), ratio(total(meds[v.key]), total(meds[peer])), g)
	}
}
