package envoy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/specgate/specgate/krakend"
	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
)

// A KrakenD configuration imported with specgate import krakend serves through real Envoy and
// authz with the routes, roles and limits the KrakenD file declared.
func TestImportedKrakenDConfig(t *testing.T) {
	t.Parallel()
	b := e2e.NewBackend(t, "shop")
	kd := fmt.Sprintf(`{"version": 3, "endpoints": [
  {"endpoint": "/v1/orders/{id}", "method": "GET",
   "extra_config": {"auth/validator": {"alg": "RS256", "jwk_url": "https://unused.test/jwks.json", "issuer": %q, "audience": [%q],
     "roles_key": "scope", "roles": ["orders:admin"]}},
   "backend": [{"host": ["http://127.0.0.1:%s"], "url_pattern": "/v1/orders/{id}"}]},
  {"endpoint": "/v1/catalog",
   "extra_config": {"qos/ratelimit/router": {"max_rate": 3, "every": "1m"}},
   "backend": [{"host": ["http://127.0.0.1:%s"], "url_pattern": "/v1/catalog"}]}
]}`, stack.Issuer, stack.Audience, b.Port(), b.Port())
	res, err := krakend.Convert([]byte(kd))
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{}
	for name, content := range res.Files {
		if rest, ok := strings.CutPrefix(name, "specs/"); ok {
			specs[rest] = string(content)
		}
	}
	if len(specs) != 1 || len(res.Report) != 0 {
		t.Fatalf("import: %d spec files, report %q", len(specs), res.Report)
	}
	s := stack.Start(t, stack.Options{Specs: specs})
	status := func(path, token string) int {
		req, _ := http.NewRequest("GET", s.Public+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"the role", "/v1/orders/42", s.Token("alice", "orders:admin"), 200},
		{"another role", "/v1/orders/42", s.Token("bob", "orders:read"), 403},
		{"no token", "/v1/orders/42", "", 401},
	} {
		if got := status(tc.path, tc.token); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	var codes []int
	for range 4 {
		codes = append(codes, status("/v1/catalog", ""))
	}
	if fmt.Sprint(codes) != "[200 200 200 429]" {
		t.Errorf("max_rate 3 every 1m: %v, want [200 200 200 429]", codes)
	}
}
