package krakend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/config"
)

// A KrakenD configuration covering every field the importer reads and each kind it reports
// (testdata/krakend.json, written from KrakenD's configuration reference): the spec set
// compiles as the control plane would with its gateway.yaml, holds the endpoints,
// roles, scopes, limits, headers, timeouts and CORS the file declared, leaves out (never
// open) the endpoint whose authentication has no equivalent, and the report names every
// feature left out.
func TestConvert(t *testing.T) {
	b, err := os.ReadFile("testdata/krakend.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(b)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	specs := map[string][]byte{}
	for name, content := range res.Files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if rest, ok := strings.CutPrefix(name, "specs/"); ok {
			specs[rest] = content
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatalf("gateway.yaml: %v\n%s", err, res.Files["gateway.yaml"])
	}
	if len(cfg.Issuers) != 1 || cfg.Issuers[0].Issuer != "https://auth.example.com/" || strings.Join(cfg.Issuers[0].Audiences, ",") != "shop" ||
		cfg.Revocation.ExpectedEntries != 10_000_000 || cfg.Revocation.FalsePositiveRate != 1e-7 {
		t.Errorf("gateway.yaml: %+v %+v", cfg.Issuers, cfg.Revocation)
	}
	gw, diags := compiler.CompileFiles(dir, specs, compiler.Options{Gateway: &cfg, Policy: compiler.PolicyOf(cfg)})
	if err := diags.Err(); err != nil {
		t.Fatalf("the imported specs do not compile: %v", err)
	}
	ops := map[string]string{}
	for _, s := range gw.Services {
		for _, op := range s.Operations {
			j, _ := yaml.Marshal(op)
			ops[op.Method+" "+op.Path] = s.Name + " " + strings.Join(strings.Fields(string(j)), " ")
		}
	}
	for op, want := range map[string][]string{
		"GET /v1/users/{id}":       {"users-shop-svc-cluster-local", "- users:read", "- admin", "timeout: 5000000000", "x-tenant"},
		"PUT /v1/users/{id}/roles": {"scopes: - admin - users:write"},
		"GET /v1/stock":            {"users-shop-svc-cluster-local-2"},
		"GET /v1/catalog":          {"catalog-shop-svc-cluster-local", "anonymous: true", "key: route per: minute requests: 100", "key: ip per: minute requests: 10"},
		"GET /v1/catalog/search":   {"header: X-Tenant key: header per: second requests: 5"},
		"POST /v1/token":           {"anonymous: true"},
	} {
		got, ok := ops[op]
		if !ok {
			t.Errorf("%s is not imported", op)
			continue
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q not in %s", op, w, got)
			}
		}
	}
	for _, op := range []string{"GET /v1/dashboard", "GET /v1/legacy", "POST /v1/users", "GET /v1/users/{id}/keys"} {
		if _, ok := ops[op]; ok {
			t.Errorf("%s is imported; it cannot be (aggregation, HS256, another audience, auth/api-keys)", op)
		}
	}
	if !strings.Contains(string(res.Files["specs/users-shop-svc-cluster-local.yaml"]), "allowOrigins") {
		t.Error("security/cors is not on the services")
	}
	report := strings.Join(res.Report, "\n")
	for _, want := range []string{
		"async_agent: async agents", "extra_config telemetry/logging", "GET /v1/dashboard: 2 backends (aggregation)",
		"GET /v1/legacy: auth/validator alg HS256", "GET /v1/legacy: skipped", "POST /v1/token: extra_config auth/signer",
		"POST /v1/token: backend mapping", "GET /v1/catalog: backend allow", "GET /v1/catalog/search: proxy sequential",
		"GET /v1/catalog/search: url_pattern /search differs", "POST /v1/users: backend hosts beyond the first",
		"POST /v1/users: auth/validator audience [admin-console] differs", "GET /v1/users/{id}/keys: skipped: extra_config auth/api-keys",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
}

// Not a KrakenD v3 configuration: refused, nothing written.
func TestConvertRefusesOtherFiles(t *testing.T) {
	for _, in := range []string{`{"version": 2, "endpoints": []}`, `openapi: 3.1.0`, `{"version": 3}`} {
		if _, err := Convert([]byte(in)); !errors.Is(err, ErrNotKrakenD) {
			t.Errorf("%s: %v, want ErrNotKrakenD", in, err)
		}
	}
}
