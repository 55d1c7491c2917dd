package extauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

const adminToken = "test-admin-token"

// replica is one Run of the service on free loopback ports.
type replica struct {
	c      authv3.AuthorizationClient
	conn   *grpc.ClientConn
	http   string // base URL of the admin server
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t testing.TB, cfg config.Gateway, devKey string) *replica {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{http: "http://" + hl.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- Run(ctx, Options{Config: cfg, GRPCListener: gl, HTTPListener: hl, AdminToken: adminToken, DevKeyFile: devKey,
			Logger: slog.New(slog.DiscardHandler)})
	}()
	if r.conn, err = grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	r.c = authv3.NewAuthorizationClient(r.conn)
	t.Cleanup(r.stop)
	testutil.Eventually(t, 10*time.Second, "replica ready", func() bool { return r.get(t, "/readyz") == 200 })
	return r
}

func (r *replica) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.conn.Close()
	r.cancel = nil
}

func (r *replica) get(t testing.TB, path string) int {
	resp, err := http.Get(r.http + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// revoke calls POST /v1/revocations and returns the status and body.
func (r *replica) revoke(t testing.TB, token string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, r.http+"/v1/revocations", bytes.NewReader(b))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (r *replica) status(t testing.TB, tok string) int {
	t.Helper()
	return httpStatus(check(t, r.c, bearerReq(t, protectedRoute, tok)))
}

func jtiOf(t testing.TB, tok string) string {
	parsed, err := jwt.ParseInsecure([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	jti, _ := parsed.JwtID()
	return jti
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	r := startReplica(t, testConfig(p), "")
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/.well-known/jwks.json": 404} {
		if got := r.get(t, path); got != want {
			t.Errorf("GET %s: %d, want %d", path, got, want)
		}
	}
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	if r.status(t, tok) != 200 {
		t.Fatal("token refused before any revocation")
	}
	for name, tc := range map[string]struct {
		token string
		body  any
		want  int
	}{
		"no admin token":     {"", map[string]string{"jti": "x"}, 401},
		"wrong admin token":  {"nope", map[string]string{"jti": "x"}, 401},
		"two keys":           {adminToken, map[string]string{"jti": "x", "sub": "y"}, 400},
		"none":               {adminToken, map[string]string{}, 400},
		"unknown field":      {adminToken, map[string]string{"filter": "AAAA"}, 400},
		"before without sub": {adminToken, map[string]string{"jti": "x", "before": "2026-01-01T00:00:00Z"}, 400},
		"not a JWT":          {adminToken, map[string]string{"token": "abc"}, 400},
	} {
		if got, body := r.revoke(t, tc.token, tc.body); got != tc.want {
			t.Errorf("%s: %d %s, want %d", name, got, body, tc.want)
		}
	}
	if r.status(t, tok) != 200 {
		t.Fatal("refused calls revoked something")
	}
	if got, body := r.revoke(t, adminToken, map[string]string{"jti": jtiOf(t, tok)}); got != 200 {
		t.Fatalf("revoke jti: %d %s", got, body)
	}
	if r.status(t, tok) != 401 {
		t.Fatal("revoked jti still accepted")
	}
	noJTI := mint(t, p.key, "bob", []string{"orders:read"}, map[string]any{"jti": nil})
	if got, body := r.revoke(t, adminToken, map[string]string{"token": noJTI}); got != 200 || !strings.Contains(body, `"key":"tok:`) {
		t.Fatalf("revoke token: %d %s", got, body)
	}
	if r.status(t, noJTI) != 401 {
		t.Fatal("revoked token (by hash) still accepted")
	}
	old := mint(t, p.key, "carol", []string{"orders:read"}, map[string]any{"iat": time.Now().Add(-time.Hour).Unix()})
	if got, body := r.revoke(t, adminToken, map[string]any{"sub": "carol", "before": time.Now().Add(-30 * time.Minute)}); got != 200 {
		t.Fatalf("revoke sub: %d %s", got, body)
	}
	if r.status(t, old) != 401 || r.status(t, mint(t, p.key, "carol", []string{"orders:read"}, nil)) != 200 {
		t.Fatal("subject revocation with before: wrong cut-off")
	}
	// Every token of a token's subject, without spelling the subject (a UUID at Keycloak).
	const uuid = "8d1e7a52-0000-4000-8000-00000000000d"
	held := mint(t, p.key, uuid, []string{"orders:read"}, map[string]any{"iat": time.Now().Add(-time.Hour).Unix()})
	other := mint(t, p.key, uuid, []string{"orders:read"}, map[string]any{"iat": time.Now().Add(-time.Minute).Unix()})
	if got, body := r.revoke(t, adminToken, map[string]any{"token": held, "bySubject": true}); got != 200 || !strings.Contains(body, `"key":"sub:`+uuid) {
		t.Fatalf("revoke by the token's subject: %d %s", got, body)
	}
	if r.status(t, other) != 401 {
		t.Fatal("another token of the subject still accepted")
	}
	foreign, err := devissuer.Mint(p.key, "https://elsewhere.example/", testAud, uuid, nil, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]any{"bySubject without token": map[string]any{"bySubject": true},
		"untrusted issuer": map[string]any{"token": foreign, "bySubject": true}} {
		if got, out := r.revoke(t, adminToken, body); got != 400 {
			t.Errorf("%s: %d %s, want 400", name, got, out)
		}
	}
	resp, err := http.Get(r.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"specgate_authz_checks_total", "specgate_authz_check_duration_seconds_bucket",
		"specgate_authz_token_cache_total", "specgate_authz_revocations_total 4", "specgate_authz_revocation_entries 4",
		"specgate_authz_bloom_fill_ratio", "specgate_authz_bloom_estimated_fp_rate", "specgate_authz_jwks_refresh_total",
		"specgate_authz_jwks_keys"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	// gRPC health.
	hc := healthpb.NewHealthClient(r.conn)
	hr, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %v %v", hr, err)
	}
}

// TestDevIssuerFlow is `make run`'s loop: the service serves the dev key's JWKS and
// accepts tokens minted with the same key file.
func TestDevIssuerFlow(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "dev-key.pem")
	hl, err := net.Listen("tcp", "127.0.0.1:0") // reserve a port to name the issuer
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + hl.Addr().String()
	hl.Close()
	cfg := config.Default()
	cfg.Issuers = []config.Issuer{{Issuer: base + "/", JWKSURI: base + devissuer.JWKSPath, Audiences: []string{devissuer.Audience}}}
	cfg.Revocation.ExpectedEntries = 1000
	cfg.Revocation.Store = "memory"
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err = net.Listen("tcp", hl.Addr().String())
	if err != nil {
		t.Skipf("port reuse: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, GRPCListener: gl, HTTPListener: hl, DevKeyFile: keyFile})
	}()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	testutil.Eventually(t, 10*time.Second, "dev JWKS served", func() bool {
		resp, err := http.Get(base + devissuer.JWKSPath)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	k, err := devissuer.LoadOrCreate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devissuer.Mint(k, base+"/", devissuer.Audience, "dev", []string{"orders:read"}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "dev token accepted", func() bool {
		return httpStatus(check(t, c, bearerReq(t, protectedRoute, tok))) == 200
	})
}

func TestFileStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Revocation.Store = "file://" + filepath.Join(t.TempDir(), "revocations.jsonl")
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	r := startReplica(t, cfg, "")
	if got, body := r.revoke(t, adminToken, map[string]string{"jti": jtiOf(t, tok)}); got != 200 {
		t.Fatalf("revoke: %d %s", got, body)
	}
	r.stop()
	r = startReplica(t, cfg, "")
	if r.status(t, tok) != 401 {
		t.Fatal("revocation lost across a restart")
	}
	if r.status(t, mint(t, p.key, "alice", []string{"orders:read"}, nil)) != 200 {
		t.Fatal("other token refused")
	}
}

func TestRedisReplicas(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	p := newIdP(t)
	cfg := testConfig(p)
	cfg.Revocation.Store = rs.URL()
	a, b := startReplica(t, cfg, ""), startReplica(t, cfg, "")
	tok1 := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	if a.status(t, tok1) != 200 || b.status(t, tok1) != 200 {
		t.Fatal("token refused before revocation")
	}
	if got, body := a.revoke(t, adminToken, map[string]string{"jti": jtiOf(t, tok1)}); got != 200 {
		t.Fatalf("revoke on A: %d %s", got, body)
	}
	if a.status(t, tok1) != 401 {
		t.Fatal("A accepts what it revoked")
	}
	testutil.Eventually(t, time.Second, "B refuses the token revoked on A", func() bool { return b.status(t, tok1) == 401 })

	// Restart both replicas: the set comes back from Redis.
	a.stop()
	b.stop()
	a, b = startReplica(t, cfg, ""), startReplica(t, cfg, "")
	if a.status(t, tok1) != 401 || b.status(t, tok1) != 401 {
		t.Fatal("revocation lost across replica restarts")
	}

	// Redis down: checks go on with the last known set; the API refuses to pretend.
	rs.Stop()
	tok2 := mint(t, p.key, "bob", []string{"orders:read"}, nil)
	if a.status(t, tok1) != 401 || a.status(t, tok2) != 200 || b.status(t, tok2) != 200 {
		t.Fatal("checks changed while Redis is down")
	}
	if got, body := a.revoke(t, adminToken, map[string]string{"jti": jtiOf(t, tok2)}); got != 503 || !strings.Contains(body, "nothing was revoked") {
		t.Fatalf("revoke with Redis down: %d %s, want 503 saying nothing was revoked", got, body)
	}
	if a.status(t, tok2) != 200 {
		t.Fatal("a revocation that was refused with 503 was applied anyway")
	}

	// Redis back: the API works again and the replicas reload.
	rs.Restart()
	testutil.Eventually(t, 10*time.Second, "revoke works again", func() bool {
		got, _ := a.revoke(t, adminToken, map[string]string{"jti": jtiOf(t, tok2)})
		return got == 200
	})
	testutil.Eventually(t, 10*time.Second, "B learns of it", func() bool { return b.status(t, tok2) == 401 })

	// An entry written straight into Redis (no publish) reaches the replicas only through
	// the full reload after a reconnect.
	tok3 := mint(t, p.key, "carol", []string{"orders:read"}, nil)
	writeDirect(t, rs.URL(), "jti:"+jtiOf(t, tok3))
	if b.status(t, tok3) != 200 {
		t.Fatal("unpublished entry seen without a reload")
	}
	rs.Restart()
	testutil.Eventually(t, 10*time.Second, "replicas reload after reconnect", func() bool {
		return a.status(t, tok3) == 401 && b.status(t, tok3) == 401
	})
}
