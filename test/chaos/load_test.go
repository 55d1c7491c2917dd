package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// full is `make chaos` (SPECGATE_CHAOS=full): more load, longer phases, 1,000,000 fuzzed
// tokens. Otherwise the short form keeps the whole package well under a minute inside
// `make test`.
var full = os.Getenv("SPECGATE_CHAOS") == "full"

// pick returns short or long by mode.
func pick[T any](short, long T) T {
	if full {
		return long
	}
	return short
}

// phaseTime is how long a steady phase holds under load.
var phaseTime = pick(1500*time.Millisecond, 10*time.Second)

// loadRPS is the steady request rate of every scenario (over all its targets).
var loadRPS = pick(100, 200)

// maxLoad bounds any load run, whatever the test does.
const maxLoad = 5 * time.Minute

// target is one kind of request the load sends.
type target struct {
	name  string
	url   string
	token string
}

// key names one cell of the load's table.
type key struct {
	phase, target string
	status        int // 0: transport error (no HTTP answer)
}

// load sends paced requests, round robin over its targets, and counts answers by phase (the
// phase current when the request was sent), target and status.
type load struct {
	t       *testing.T
	client  *http.Client
	targets []target
	phase   atomic.Pointer[string]

	mu      sync.Mutex
	phases  []string
	counts  map[key]int
	nonJSON map[key]int
	sample  map[key]string // first body (or error) per cell

	stop, done chan struct{}
	skipped    atomic.Int64 // ticks dropped because too many requests were in flight
}

// startLoad begins sending rps requests a second until stop (or maxLoad). The first phase is
// "up".
func startLoad(t *testing.T, rps int, targets ...target) *load {
	t.Helper()
	l := &load{
		t:       t,
		client:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
		targets: targets,
		counts:  map[key]int{}, nonJSON: map[key]int{}, sample: map[key]string{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	l.setPhase("up")
	go l.run(rps)
	t.Cleanup(l.halt)
	return l
}

func (l *load) run(rps int) {
	defer close(l.done)
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	deadline := time.After(maxLoad)
	inflight := make(chan struct{}, 256)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-deadline:
			return
		case <-tick.C:
		}
		select {
		case inflight <- struct{}{}:
		default:
			l.skipped.Add(1)
			continue
		}
		tg, ph := l.targets[i%len(l.targets)], *l.phase.Load()
		wg.Add(1)
		go func() {
			defer func() { <-inflight; wg.Done() }()
			l.do(ph, tg)
		}()
	}
}

func (l *load) do(phase string, tg target) {
	req, _ := http.NewRequest("GET", tg.url, nil)
	if tg.token != "" {
		req.Header.Set("Authorization", "Bearer "+tg.token)
	}
	k := key{phase: phase, target: tg.name}
	var body []byte
	var sample string
	resp, err := l.client.Do(req)
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		k.status = resp.StatusCode
		sample = string(body)
	}
	if err != nil {
		k.status = 0
		sample = err.Error()
	}
	isJSON := err == nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && json.Valid(body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[k]++
	if !isJSON {
		l.nonJSON[k]++
	}
	if _, ok := l.sample[k]; !ok {
		l.sample[k] = sample
	}
}

// setPhase makes every request sent from now on count under name.
func (l *load) setPhase(name string) {
	l.mu.Lock()
	l.phases = append(l.phases, name)
	l.mu.Unlock()
	l.phase.Store(&name)
}

// inject runs a fault under its own transition phase: requests sent before the fault
// completes (some of them in flight while it happens) count there, so the phases before and
// after hold only requests sent wholly before or wholly after the fault. The 200ms lets the
// previous phase's requests finish first.
func (l *load) inject(phase string, fault func()) {
	l.setPhase(phase)
	time.Sleep(200 * time.Millisecond)
	fault()
}

// hold keeps the current phase for d (a bounded wait: the load runs meanwhile).
func (l *load) hold(d time.Duration) { time.Sleep(d) }

// halt stops sending and waits for the requests in flight. Idempotent.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// statuses are the answers of one target in one phase, by status (0: transport error).
func (l *load) statuses(phase, tgt string) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for k, n := range l.counts {
		if k.phase == phase && k.target == tgt {
			out[k.status] += n
		}
	}
	return out
}

// total counts one target's requests in a phase.
func (l *load) total(phase, tgt string) int {
	n := 0
	for _, c := range l.statuses(phase, tgt) {
		n += c
	}
	return n
}

// nonJSONCount counts answers of a cell whose body was not JSON (or not labelled so).
func (l *load) nonJSONCount(phase, tgt string, status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nonJSON[key{phase, tgt, status}]
}

// sampleOf is the first body (or transport error) of a cell.
func (l *load) sampleOf(phase, tgt string, status int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sample[key{phase, tgt, status}]
}

// only fails the test unless every answer of tgt in phase has one of the statuses, and at
// least one request was sent.
func (l *load) only(phase, tgt string, allowed ...int) {
	l.t.Helper()
	st := l.statuses(phase, tgt)
	if len(st) == 0 {
		l.t.Errorf("phase %s, %s: no requests sent", phase, tgt)
	}
	for code, n := range st {
		if !slices.Contains(allowed, code) {
			l.t.Errorf("phase %s, %s: %d answers with status %d (want only %v); first: %.300s",
				phase, tgt, n, code, allowed, l.sampleOf(phase, tgt, code))
		}
	}
}

// never fails the test if tgt answered one of the statuses in phase.
func (l *load) never(phase, tgt string, forbidden ...int) {
	l.t.Helper()
	st := l.statuses(phase, tgt)
	for _, code := range forbidden {
		if n := st[code]; n > 0 {
			l.t.Errorf("phase %s, %s: %d answers with status %d; first: %.300s", phase, tgt, n, code, l.sampleOf(phase, tgt, code))
		}
	}
}

// report logs the table, one line per phase and target, in phase order; the figures of
// docs/reliability.md come from these lines.
func (l *load) report() {
	l.t.Helper()
	l.mu.Lock()
	phases := slices.Clone(l.phases)
	l.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "load (%s mode, %d rps over %d targets; skipped ticks %d):\n", pick("short", "full"), loadRPS, len(l.targets), l.skipped.Load())
	for _, ph := range phases {
		for _, tg := range l.targets {
			st := l.statuses(ph, tg.name)
			if len(st) == 0 {
				continue
			}
			codes := slices.Sorted(maps.Keys(st))
			parts := make([]string, len(codes))
			for i, c := range codes {
				parts[i] = fmt.Sprintf("%d=%d", c, st[c])
			}
			fmt.Fprintf(&b, "  %-18s %-10s n=%-6d %s\n", ph, tg.name, l.total(ph, tg.name), strings.Join(parts, " "))
		}
	}
	l.t.Log(b.String())
}

// sum adds the series of one metric whose labels contain every one of labels.
func sum(m map[string]float64, name string, labels ...string) (float64, bool) {
	var total float64
	found := false
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

// envoyStats reads Envoy admin counters whose names match the regex filter.
func envoyStats(t *testing.T, adminAddr, filter string) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/stats?filter=" + url.QueryEscape(filter))
	if err != nil {
		t.Fatalf("envoy stats: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// statsSum adds the counters whose names end with suffix.
func statsSum(stats map[string]int64, suffix string) int64 {
	var n int64
	for k, v := range stats {
		if strings.HasSuffix(k, suffix) {
			n += v
		}
	}
	return n
}

// fmtMap prints a map sorted by key, for logs.
func fmtMap[K interface{ ~int | ~string }, V any](m map[K]V) string {
	ks := slices.Collect(maps.Keys(m))
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%v=%v", k, m[k])
	}
	return strings.Join(parts, " ")
}
