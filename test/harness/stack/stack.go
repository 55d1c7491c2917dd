// Package stack runs the whole gateway for resilience tests and benchmarks: the control
// plane, authz and ratelimit replicas as separate specgate processes (so a test can kill -9
// them), real Redis, a JWKS for test tokens, and a real Envoy on ADS in front.
package stack

import (
	"fmt"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

// AdminToken protects the push and revocation APIs of every stack.
const AdminToken = "stack-admin-token"

// Issuer and Audience of the stack's test tokens.
const (
	Issuer   = "https://issuer.stack.test/"
	Audience = "api"
)

// ShopSpec is the spec most stacks serve, for {{PORT}} (its backend) and {{LIMIT}}: /shop/orders
// needs a token with orders:read, /shop/public is anonymous and limited to 5 a minute per
// IP, /shop/open is anonymous, /shop/limited is limited to {{LIMIT}} a second per IP.
const ShopSpec = `openapi: 3.1.0
info: {title: Shop, version: 1.0.0}
x-specgate: {service: shop, backend: "http://127.0.0.1:{{PORT}}", basePath: /shop}
security: [{oauth: [orders:read]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {orders:read: r}}}}
paths:
  /orders:
    get: {operationId: listOrders, responses: {"200": {description: ok}}}
  /public:
    get: {operationId: public, security: [], x-specgate: {rateLimits: [{requests: 5, per: minute, key: ip}]}, responses: {"200": {description: ok}}}
  /open:
    get: {operationId: open, security: [], responses: {"200": {description: ok}}}
  /limited:
    get: {operationId: limited, security: [], x-specgate: {rateLimits: [{requests: {{LIMIT}}, per: second, key: ip}]}, responses: {"200": {description: ok}}}
`

// Options shape a stack.
type Options struct {
	// Specs are OpenAPI files (name → content); {{KEY}} is replaced by Vars[KEY].
	Specs map[string]string
	Vars  map[string]string
	// AuthzReplicas and RateLimitReplicas default to 1; Envoy balances over all of them.
	AuthzReplicas, RateLimitReplicas int
	// NoRedis keeps revocations in a file and counters in memory (one replica each).
	NoRedis bool
	// RedisURL, when set, is the store of both roles (a cluster or Sentinel the test runs)
	// instead of a single server started for the stack.
	RedisURL string
	// RedisArgs are extra server arguments of the stack's own Redis (e.g. --maxmemory).
	RedisArgs []string
	// Configure edits gateway.yaml before it is written.
	Configure func(*config.Gateway)
	// Bootstrap edits Envoy's bootstrap before it is written (a test's DNS resolver).
	Bootstrap func(*bootstrapv3.Bootstrap)
	// Plugin is the authz plugin's module (testutil.Plugin): Envoy runs it in front of
	// ext_authz, fed by the authz replicas.
	Plugin string
	// EnvoyWorkers is Envoy's --concurrency (default 2).
	EnvoyWorkers int
	// Validate runs specgate validate, for specs with x-specgate validate: request.
	Validate bool
}

// Stack is a running gateway.
type Stack struct {
	t         testing.TB
	Dir       string
	Config    config.Gateway
	Redis     *testredis.Server
	Key       *devissuer.Key
	XDS       *Proc
	Authz     []*Proc
	RateLimit []*Proc
	Validate  *Proc // with Options.Validate
	Envoy     *testenvoy.Envoy
	// Public and Internal are the listeners' base URLs; PushURL the control plane's API.
	Public, Internal, PushURL string
}

// Start runs a stack until the test ends.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	if o.AuthzReplicas == 0 {
		o.AuthzReplicas = 1
	}
	if o.RateLimitReplicas == 0 {
		o.RateLimitReplicas = 1
	}
	s := &Stack{t: t, Dir: t.TempDir()}
	var err error
	if s.Key, err = devissuer.Generate("RS256"); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(devissuer.JWKS(s.Key))
	t.Cleanup(jwks.Close)

	cfg := config.Default()
	cfg.Backends.Allow = []string{"127.0.0.0/8"} // the test backends
	cfg.Listeners.Public, cfg.Listeners.Internal = uint32(testutil.FreePort(t)), uint32(testutil.FreePort(t))
	cfg.Issuers = []config.Issuer{{Issuer: Issuer, JWKSURI: jwks.URL, Audiences: []string{Audience}, Algorithms: []string{"RS256"}}}
	switch {
	case o.NoRedis:
		cfg.Revocation.Store = "file://" + filepath.Join(s.Dir, "revocations.jsonl")
	case o.RedisURL != "":
		cfg.Revocation.Store, cfg.RateLimit.Store = o.RedisURL, o.RedisURL
	default:
		s.Redis = testredis.Start(t, o.RedisArgs...)
		cfg.Revocation.Store = s.Redis.URL()
		cfg.RateLimit.Store = s.Redis.URL()
	}
	if o.Validate { // its address goes into gateway.yaml; its control plane's, once known
		s.Validate = s.proc("validate", testutil.Specgate(t), "validate")
		cfg.Validation.Address = s.Validate.GRPC
	}
	cfgPath := filepath.Join(s.Dir, "gateway.yaml")
	bin := testutil.Specgate(t)
	for i := range o.AuthzReplicas { // their ports go into gateway.yaml with the plugin
		s.Authz = append(s.Authz, s.proc(fmt.Sprintf("authz-%d", i), bin, "authz", "--config", cfgPath))
	}
	if o.Plugin != "" {
		cfg.Authz.Plugin.Module = o.Plugin
		cfg.Authz.Plugin.FeedAddress = addrs(s.Authz, func(p *Proc) string { return p.HTTP })
	}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	s.Config = cfg
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	specs := filepath.Join(s.Dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range o.Specs {
		e2e.WriteSpec(t, specs, name, content, o.Vars)
	}

	s.XDS = s.proc("xds", bin, "xds", "--specs", specs, "--config", cfgPath, "--debounce", "50ms")
	if s.Validate != nil {
		s.Validate.args = append(s.Validate.args[:0:0], "validate", "--xds", s.XDS.GRPC, "--grpc", s.Validate.GRPC, "--http", s.Validate.HTTP)
	}
	s.PushURL = "http://" + s.XDS.HTTP
	s.XDS.Start()
	s.XDS.WaitReady("/readyz")
	for _, p := range s.Authz {
		p.Start()
		p.WaitReady("/readyz")
	}
	for i := range o.RateLimitReplicas {
		p := s.proc(fmt.Sprintf("ratelimit-%d", i), bin, "ratelimit", "--config", cfgPath, "--xds", s.XDS.GRPC)
		p.Start()
		p.WaitReady("/readyz")
		s.RateLimit = append(s.RateLimit, p)
	}

	bo := translate.BootstrapOptions{NodeID: "stack", AdminAddress: testutil.FreeAddr(t),
		AuthzAddress: grpcAddrs(s.Authz), RateLimitAddr: grpcAddrs(s.RateLimit)}
	if s.Validate != nil {
		s.Validate.Start()
		s.Validate.WaitReady("/readyz")
	}
	admin := bo.AdminAddress
	boot, err := translate.ADSBootstrap(bo, s.XDS.GRPC, false)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bootstrap != nil {
		o.Bootstrap(boot)
	}
	y, err := translate.YAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	bootPath := filepath.Join(s.Dir, "envoy.yaml")
	if err := os.WriteFile(bootPath, y, 0o644); err != nil {
		t.Fatal(err)
	}
	var envoyArgs []string
	if o.EnvoyWorkers > 0 {
		envoyArgs = []string{"--concurrency", strconv.Itoa(o.EnvoyWorkers)}
	}
	s.Envoy = testenvoy.Start(t, bootPath, admin, envoyArgs...)
	s.Public = fmt.Sprintf("http://127.0.0.1:%d", cfg.Listeners.Public)
	s.Internal = fmt.Sprintf("http://127.0.0.1:%d", cfg.Listeners.Internal)
	// Ready when Envoy holds the listeners (a 404 from the catch-all route proves it).
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.Public + "/.specgate-stack-probe")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 404 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Envoy did not get its listeners: %v\n%s", err, s.Envoy.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func grpcAddrs(ps []*Proc) string { return addrs(ps, func(p *Proc) string { return p.GRPC }) }

func addrs(ps []*Proc, addr func(*Proc) string) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = addr(p)
	}
	return strings.Join(out, ",")
}

// Token mints a token of the stack's issuer.
func (s *Stack) Token(sub string, scopes ...string) string {
	s.t.Helper()
	tok, err := devissuer.Mint(s.Key, Issuer, Audience, sub, scopes, time.Hour, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// Proc is one specgate role as a child process on fixed loopback ports, so it can be killed
// and started again where Envoy expects it.
type Proc struct {
	Name       string
	GRPC, HTTP string
	t          testing.TB
	bin        string
	args       []string
	mu         sync.Mutex
	cmd        *exec.Cmd
	log        *testenvoy.LogBuffer
}

func (s *Stack) proc(name, bin string, args ...string) *Proc { return NewProc(s.t, name, bin, args...) }

// NewProc is a specgate role (bin args... --grpc ADDR --http ADDR, on free loopback ports),
// not started yet, stopped at the end of the test, its log printed if the test fails.
func NewProc(t testing.TB, name, bin string, args ...string) *Proc {
	p := &Proc{Name: name, t: t, bin: bin, log: &testenvoy.LogBuffer{},
		GRPC: testutil.FreeAddr(t),
		HTTP: testutil.FreeAddr(t)}
	p.args = append(args, "--grpc", p.GRPC, "--http", p.HTTP)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log())
		}
	})
	return p
}

// Start runs the process (again).
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), "SPECGATE_ADMIN_TOKEN="+AdminToken)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd = cmd
}

// WaitReady polls an HTTP path of the process until it answers 200.
func (p *Proc) WaitReady(path string) {
	p.t.Helper()
	// On failure the stack's cleanup prints the process's log.
	testutil.WaitOK(p.t, "http://"+p.HTTP+path, 20*time.Second)
}

// Kill sends SIGKILL: a crash, no graceful shutdown.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits. Idempotent.
func (p *Proc) Stop() { p.signal(syscall.SIGTERM) }

func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// Log is what the process printed so far.
func (p *Proc) Log() string { return p.log.String() }
