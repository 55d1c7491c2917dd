// Command gateway is specgate's whole-gateway benchmark (make bench): the same route, backend
// and token through Envoys side by side — no auth, specgate authz (with and without ratelimit,
// the decision cache, the access log), Envoy's native jwt_authn — then anonymous requests
// without a token (specgate's tokenless routes against bare Envoy) and a storefront's mix of
// both, then specgate authz's gRPC Check against a no-op Check server, in alternating rounds; it prints one Markdown table of medians with each
// figure's peer and ratio, folding in the figures scripts/bench.sh measured with go test and
// test/bench/ratelimit/compare.sh. Everything listens on 127.0.0.1; every load is bounded in time.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/specgen"
)

const (
	issuer   = "https://issuer.bench.test/"
	audience = "api"
)

// spec is the one service of the benchmark: a templated GET that needs a scope, with a
// per-client quota far above anything the benchmark sends (the ratelimit variants only), an
// anonymous one, which requests without a token reach without authz (tokenless routes), with a
// per-IP quota as high (the storefront mix only), and
// a POST of an order that specgate validate checks (x-specgate validate: request).
const spec = `openapi: 3.1.0
info: {title: Orders, version: 1.0.0}
x-specgate: {service: orders, backend: "http://%s"}
security: [{oauth: ["orders:read"]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://issuer.bench.test/token", scopes: {"orders:read": read}}}}
  schemas:
%s
paths:
  /orders/{id}:
    get:
      operationId: getOrder
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      x-specgate: {rateLimits: [{requests: 1000000000, per: second, key: client}]}
      responses: {"200": {description: one order}}
  /catalog/{id}:
    get:
      operationId: getProduct
      security: []
      x-specgate: {rateLimits: [{requests: 1000000000, per: second, key: ip}]}
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses: {"200": {description: one product}}
  /shops/{shop}/orders:
    post:
      operationId: placeOrder
      x-specgate: {validate: request}
      parameters: [{name: shop, in: path, required: true, schema: {type: string, format: uuid}}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Order"}}}}
      responses: {"201": {description: placed}}
`

type options struct {
	specgate, envoy     string
	rounds, conc, rate  int
	grpcConc, grpcRate  int
	dur                 time.Duration
	rlReport, goReports string
	profile             string
	grpcOnly            bool
	only                string
}

func main() {
	role := flag.String("role", "", "internal: run a peer (backend, noop-authz) instead of the benchmark")
	addr := flag.String("addr", "", "internal: the peer's address")
	addr2 := flag.String("addr2", "", "internal: the peer's probe address")
	addr3 := flag.String("addr3", "", "internal: the peer's pprof address")
	cfgFlag := flag.String("config", "", "internal: gateway.yaml of a profiled role")
	limitsFlag := flag.String("limits", "", "internal: limits of the profiled ratelimit")
	var o options
	flag.StringVar(&o.specgate, "specgate", "bin/specgate", "specgate binary (make build)")
	flag.StringVar(&o.envoy, "envoy", "", "Envoy binary (default $ENVOY_BIN, .tools/envoy/envoy, PATH)")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds; the table shows medians")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration of each measured run")
	flag.IntVar(&o.conc, "c", 32, "HTTP closed loop: connections, each one request at a time")
	flag.IntVar(&o.rate, "rate", 500, "HTTP open loop: requests per second")
	flag.IntVar(&o.grpcConc, "grpc-c", 32, "gRPC Check closed loop: concurrent callers (over 2 connections)")
	flag.IntVar(&o.grpcRate, "grpc-rate", 2000, "gRPC Check open loop: calls per second")
	flag.StringVar(&o.rlReport, "ratelimit-report", "", "output of test/bench/ratelimit/compare.sh to fold into the table")
	flag.StringVar(&o.goReports, "go-report", "", "output of the go test benchmarks to fold into the table")
	flag.BoolVar(&o.grpcOnly, "grpc-only", false, "only the gRPC Check runs (for experiments)")
	flag.StringVar(&o.only, "only", "", "only these Envoy variants, by comma-separated keys (key* for a prefix), and no gRPC\n"+
		"runs: more rounds of a few figures on a noisy machine")
	flag.StringVar(&o.profile, "profile", "", "directory: run authz and ratelimit in this binary with pprof and write CPU profiles\n"+
		"of both under the authz+ratelimit variant's closed loop (an extra run, not in the table)")
	flag.Parse()

	var err error
	if *role == "" {
		// Ctrl-C: stop every child before leaving (they also die with us: Pdeathsig).
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() { <-sig; stopAll(); os.Exit(130) }()
		err = run(o)
		stopAll()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch *role {
	case "backend":
		err = runBackend(ctx, *addr)
	case "noop-authz":
		err = runNoopAuthz(ctx, *addr, *addr2)
	case "authz-pprof", "ratelimit-pprof":
		err = runProfiled(ctx, *role, *cfgFlag, *limitsFlag, *addr, *addr2, *addr3)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }

func run(o options) error {
	if o.envoy == "" {
		o.envoy = envoyBinary()
	}
	if o.rounds < 1 || o.conc < 1 || o.rate < 1 || o.grpcConc < 1 || o.grpcRate < 1 || o.dur <= 0 {
		return errors.New("bad flags")
	}
	dir, err := os.MkdirTemp("", "specgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// Key, token, JWKS (served here: authz fetches it once at start and caches it).
	key, err := devissuer.Generate("RS256")
	if err != nil {
		return err
	}
	token, err := devissuer.Mint(key, issuer, audience, "alice", []string{"orders:read"}, time.Hour, nil)
	if err != nil {
		return err
	}
	ts := tokens{one: token}
	if !o.grpcOnly {
		if ts.zipf, err = zipfSequence(key, zipfTokens, zipfDraws); err != nil {
			return err
		}
	}
	jwksLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(jwksLis, devissuer.JWKS(key)) }()

	// The backend.
	backendAddr, err := freeAddr()
	if err != nil {
		return err
	}
	backend, err := start("backend", nil, self, "-role", "backend", "-addr", backendAddr)
	if err != nil {
		return err
	}
	if err := backend.waitHTTP("http://"+backendAddr+"/", 10*time.Second); err != nil {
		return err
	}

	// The specs, compiled once.
	specs := filepath.Join(dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(specs, "orders.yaml"), fmt.Appendf(nil, spec, backendAddr, specgen.OrderSchemas), 0o644); err != nil {
		return err
	}
	gw, diags := compiler.Compile(specs, compiler.Options{})
	if err := diags.Err(); err != nil {
		return err
	}

	// specgate authz (file revocation store) and ratelimit (memory store, limits from the
	// compiled RateLimitConfig), as separate processes.
	cfg := config.Default()
	cfg.Issuers = []config.Issuer{{Issuer: issuer, JWKSURI: "http://" + jwksLis.Addr().String() + "/", Audiences: []string{audience}, Algorithms: []string{"RS256"}}}
	cfg.Revocation.Store = "file://" + filepath.Join(dir, "revocations.jsonl")
	cfg.RateLimit.Store = "memory"
	cfg.Backends.Allow = []string{"127.0.0.0/8"} // the benchmark's backend, for the control plane's check
	authz, rl, authzAddr, rlAddr, err := startRoles(o, self, dir, gw, cfg)
	if err != nil {
		return err
	}
	// specgate validate, with the descriptions from a control plane on the same specs.
	validator, err := startValidate(o, dir, specs)
	if err != nil {
		return err
	}
	// The no-op Check server: the floor of an ext_authz hop, for Envoy and for the gRPC runs;
	// also the OTLP receiver of the tracing variants.
	noop, noopAddr, err := startNoop(self)
	if err != nil {
		return err
	}
	// The same authz offering its allows to the decision cache, for the cache variants, with
	// the access log on (it then returns the decision), with tracing on, and with both.
	cacheAuthz, err := startAuthzWith(o, dir, "cache", cfg, func(c *config.Gateway) {
		c.Authz.DecisionCacheTTL.Duration = benchCacheTTL
	})
	if err != nil {
		return err
	}
	logAuthz, err := startAuthzWith(o, dir, "log", cfg, func(c *config.Gateway) {
		c.AccessLog = config.AccessLog{Format: "json"}
	})
	if err != nil {
		return err
	}
	tracing := config.Tracing{OTLP: noopAddr, Sampling: 1} // authz traces what Envoy does
	traceAuthz, err := startAuthzWith(o, dir, "trace", cfg, func(c *config.Gateway) { c.Tracing = tracing })
	if err != nil {
		return err
	}
	logTraceAuthz, err := startAuthzWith(o, dir, "logtrace", cfg, func(c *config.Gateway) {
		c.Tracing, c.AccessLog = tracing, config.AccessLog{Format: "json"}
	})
	if err != nil {
		return err
	}

	// The same authz, feeding the authz plugin of the plugin variants.
	pluginAuthz, err := startAuthzWith(o, dir, "plugin", cfg, func(*config.Gateway) {})
	if err != nil {
		return err
	}
	pluginFeed = pluginAuthz.http

	t := &table{}
	if !o.grpcOnly {
		authzs := map[string]peer{"": {p: authz, addr: authzAddr}, authzNoop: {p: noop, addr: noopAddr}, authzCache: cacheAuthz,
			authzLog: logAuthz, authzTrace: traceAuthz, authzLogTrace: logTraceAuthz, authzPlugin: pluginAuthz}
		if err := httpBench(o, t, gw, cfg, key, ts, dir, authzs, rlAddr, rl, backend, validator); err != nil {
			return err
		}
	}
	if o.only == "" {
		grpcNoise := startForeign()
		grpcRes, err := grpcBench(o, gw, token, authz, noop, authzAddr, noopAddr)
		if err != nil {
			return err
		}
		grpcNoise.stop()
		grpcRows(t, o, grpcRes)
		t.row("other processes on the machine during these runs", fmt.Sprintf("%.0f%% of %d CPUs", 100*grpcNoise.share, runtime.NumCPU()))
	}
	if o.rlReport != "" {
		if err := rateLimitRows(t, o.rlReport); err != nil {
			return err
		}
	}
	if o.goReports != "" {
		if err := goTestRows(t, o.goReports); err != nil {
			return err
		}
	}
	fmt.Print(t.markdown())
	if f := t.failures(); f != "" {
		return errors.New(f)
	}
	return nil
}

// peer is a Check server a variant's ext_authz calls, at addr; http is specgate authz's HTTP
// port.
type peer struct {
	p          *proc
	addr, http string
}

// httpBench measures the Envoy variants and adds their rows to t.
func httpBench(o options, t *table, gw ir.Gateway, cfg config.Gateway, key *devissuer.Key, ts tokens, dir string, authzs map[string]peer, rlAddr string, rl, backend *proc, validator peer) error {
	// The Envoys, all up at once, loaded one at a time.
	vs := variants()
	if o.only != "" {
		prefixes := strings.Split(o.only, ",")
		vs = slices.DeleteFunc(vs, func(v *variant) bool {
			return !slices.ContainsFunc(prefixes, func(p string) bool {
				prefix, ok := strings.CutSuffix(p, "*")
				return v.key == p || ok && strings.HasPrefix(v.key, prefix)
			})
		})
		if len(vs) == 0 {
			return fmt.Errorf("-only %q: no such variant", o.only)
		}
	}
	if slices.ContainsFunc(vs, func(v *variant) bool { return v.wasm != "" }) {
		var err error
		if wasmPlugin, err = buildWasm(dir, "noop", "github.com/specgate/specgate/test/bench/gateway/wasmnoop"); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(vs, func(v *variant) bool { return v.authz == authzPlugin }) {
		var err error
		if authzPluginModule, err = buildWasm(dir, "authz-plugin", "github.com/specgate/specgate/extauthz/plugin"); err != nil {
			return err
		}
	}
	for _, v := range vs {
		v.otlp = authzs[authzNoop].addr
		path, err := envoyConfig(v, gw, cfg, key, authzs[v.authz].addr, rlAddr, validator.addr, dir)
		if err != nil {
			return err
		}
		if err := startEnvoy(v, o.envoy, path); err != nil {
			return err
		}
		if err := probe(v, ts.one, v.targets(ts)); err != nil {
			return err
		}
	}
	logf("%d Envoys up; HTTP: %d rounds × (closed loop c=%d, open loop %d rps) × %s", len(vs), o.rounds, o.conc, o.rate, o.dur)

	loads := map[string]*httpLoad{}
	for _, v := range vs {
		loads[v.key] = newHTTPLoad(v.targets(ts), o.conc)
		loads[v.key].closed(o.conc, time.Second) // warm-up: connections, caches, JIT of nothing
	}
	closed, open := map[string][]sample{}, map[string][]sample{}
	cpu := map[string][]cpuSample{}
	httpNoise := startForeign()
	for r := range o.rounds {
		order := rotate(vs, r)
		for _, v := range order {
			ps := []*proc{v.envoy, authzs[v.authz].p, rl, backend, validator.p}
			before := cpus(ps)
			s := loads[v.key].closed(o.conc, o.dur)
			c := perRequest(before, cpus(ps), s.requests)
			closed[v.key], cpu[v.key] = append(closed[v.key], s), append(cpu[v.key], c)
			logf("round %d %-14s closed: %6.0f rps  p50 %-9s p99 %-9s failed %d/%d  cpu µs/req %v", r+1, v.key, s.rps, s.p50, s.p99, s.failed, s.requests, c)
		}
		for _, v := range order {
			s := loads[v.key].open(o.rate, o.dur)
			open[v.key] = append(open[v.key], s)
			logf("round %d %-14s open:   %6.0f rps  p50 %-9s p99 %-9s failed %d/%d", r+1, v.key, s.rps, s.p50, s.p99, s.failed, s.requests)
		}
	}
	httpNoise.stop()
	if o.profile != "" {
		if err := profile(o, loads["authz+rl"]); err != nil {
			return err
		}
	}
	for _, v := range vs {
		v.envoy.stop() // the gRPC runs below get the CPUs to themselves
	}

	httpRows(t, o, vs, closed, open)
	cpuRows(t, o, vs, cpu)
	t.row("other processes on the machine during these runs", fmt.Sprintf("%.0f%% of %d CPUs", 100*httpNoise.share, runtime.NumCPU()))
	return nil
}

// probe proves each variant does what its name says before it is measured: the token passes,
// no token is refused where auth is on, the ratelimit filter is consulted where it is kept
// (on the anonymous route for the storefront mix, whose token route under jwt_authn has no
// client to count), and the first requests of its load answer 200 (its tokens are alike).
func probe(v *variant, token string, load []vegeta.Target) error {
	get := func(path string, auth bool) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, v.url+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := get("/orders/42", true)
	if err != nil {
		return fmt.Errorf("%s: %w", v.key, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: token answered %d, want 200:\n%s", v.key, resp.StatusCode, v.envoy.out)
	}
	if v.load == loadMix {
		if resp, err = get("/catalog/42", false); err != nil {
			return fmt.Errorf("%s: %w", v.key, err)
		}
	}
	rlHeader := resp.Header.Get("X-Ratelimit-Limit") != ""
	if rlHeader != slices.Contains(v.keep, filterRateLimit) {
		return fmt.Errorf("%s: X-RateLimit-Limit present=%v: the ratelimit filter is not what the variant says", v.key, rlHeader)
	}
	if resp, err = get("/orders/42", false); err != nil {
		return fmt.Errorf("%s: %w", v.key, err)
	}
	if resp.StatusCode != v.wantNoAuth {
		return fmt.Errorf("%s: no token answered %d, want %d", v.key, resp.StatusCode, v.wantNoAuth)
	}
	for _, tg := range load[:min(len(load), 50)] {
		req, _ := http.NewRequest(tg.Method, tg.URL, bytes.NewReader(tg.Body))
		req.Header = tg.Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", v.key, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s %s answered %d", v.key, tg.Method, tg.URL, resp.StatusCode)
		}
	}
	if v.load == loadPost {
		// An order with no lines: refused where validation is on, the backend's otherwise.
		bad := post(v.url, token, []byte(`{"customer": {"email": "a@b.c"}, "shipping": {}, "lines": []}`))
		req, _ := http.NewRequest(bad.Method, bad.URL, bytes.NewReader(bad.Body))
		req.Header = bad.Header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", v.key, err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 400, false: 200}[slices.Contains(v.keep, filterExtProc)]; resp.StatusCode != want {
			return fmt.Errorf("%s: an invalid order answered %d, want %d", v.key, resp.StatusCode, want)
		}
	}
	return nil
}

func rotate[T any](s []T, r int) []T {
	r %= len(s)
	return append(slices.Clone(s[r:]), s[:r]...)
}

// envoyBinary is $ENVOY_BIN, the project's .tools/envoy/envoy (make envoy), or envoy on PATH.
func envoyBinary() string {
	if b := os.Getenv("ENVOY_BIN"); b != "" {
		return b
	}
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		b := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".tools", "envoy", "envoy")
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	if b, err := exec.LookPath("envoy"); err == nil {
		return b
	}
	return "envoy"
}

// pprofAddrs are the pprof listeners of authz and ratelimit under -profile.
var pprofAddrs [2]string

// profile takes CPU profiles of authz and ratelimit while Envoy (authz + ratelimit) is
// driven in a closed loop, into o.profile/{authz,ratelimit}.pprof.
func profile(o options, l *httpLoad) error {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	secs := max(1, int(o.dur.Seconds()))
	errs := make(chan error, 2)
	for i, name := range []string{"authz", "ratelimit"} {
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddrs[i], secs))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				err = os.WriteFile(filepath.Join(o.profile, name+".pprof"), b, 0o644)
			}
			errs <- err
		}()
	}
	s := l.closed(o.conc, time.Duration(secs)*time.Second+500*time.Millisecond)
	logf("profiled run (authz+rl): %.0f rps; profiles in %s", s.rps, o.profile)
	return errors.Join(<-errs, <-errs)
}
