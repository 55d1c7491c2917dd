package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/test/harness/stack"
	"github.com/specgate/specgate/test/harness/testredis"
	"github.com/specgate/specgate/test/harness/testutil"
)

// A Redis password reaches the roles from the environment (${NAME} in the store URL, so that
// gateway.yaml holds no secret) or inline, and no log line at debug level, no error, no
// metric and no probe of authz or ratelimit ever prints it: not when the store works, not
// when it refuses a wrong password.
func TestCredentialsNeverPrinted(t *testing.T) {
	const password, wrong = "s3cret-Pass.word~9", "wr0ng-Pass.word~1"
	srv := testredis.Start(t, "--requirepass", password)
	t.Setenv("SPECGATE_TEST_REDIS_PASSWORD", password)
	key, err := devissuer.Generate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(devissuer.JWKS(key))
	t.Cleanup(jwks.Close)
	token, err := devissuer.Mint(key, "https://issuer.test/", "api", "alice", nil, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	bin := testutil.Specgate(t)
	limits := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(limits, []byte("domain: specgate\ndescriptors: [{key: route, value: r, descriptors: [{key: limit, value: \"0\", rate_limit: {unit: MINUTE, requests_per_unit: 5}}]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, store string
		works       bool
	}{
		{"from the environment", "redis://:${SPECGATE_TEST_REDIS_PASSWORD}@" + srv.Addr + "/0", true},
		{"inline", "redis://:" + password + "@" + srv.Addr + "/0", true},
		{"wrong", "redis://:" + wrong + "@" + srv.Addr + "/0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Issuers = []config.Issuer{{Issuer: "https://issuer.test/", JWKSURI: jwks.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}}}
			cfg.Revocation.Store, cfg.RateLimit.Store = c.store, c.store
			b, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			gw := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(gw, b, 0o600); err != nil {
				t.Fatal(err)
			}
			authz := stack.NewProc(t, "authz", bin, "authz", "--config", gw, "--log-level", "debug")
			rl := stack.NewProc(t, "ratelimit", bin, "ratelimit", "--config", gw, "--limits", limits, "--log-level", "debug")
			authz.Start()
			rl.Start()
			testutil.WaitOK(t, "http://"+rl.HTTP+"/healthz", 20*time.Second)
			testutil.WaitOK(t, "http://"+authz.HTTP+"/healthz", 20*time.Second)
			var seen []string // everything the roles answered
			get := func(url string) int {
				resp, err := http.Get(url)
				if err != nil {
					return 0
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				seen = append(seen, string(body))
				return resp.StatusCode
			}
			if c.works {
				testutil.Eventually(t, 20*time.Second, "authz ready on Redis", func() bool { return get("http://"+authz.HTTP+"/readyz") == 200 })
				body, _ := json.Marshal(map[string]string{"token": token})
				req, _ := http.NewRequest("POST", "http://"+authz.HTTP+"/v1/revocations", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+stack.AdminToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("revoke through a store reached with the password: %v %v", resp, err)
				}
				resp.Body.Close()
			} else {
				time.Sleep(2 * time.Second) // some failed dials and retries, logged at debug
				if code := get("http://" + authz.HTTP + "/readyz"); code == 200 {
					t.Fatalf("authz ready with a wrong Redis password")
				}
			}
			for _, p := range []string{authz.HTTP + "/metrics", authz.HTTP + "/readyz", authz.HTTP + "/healthz", rl.HTTP + "/metrics", rl.HTTP + "/readyz"} {
				get("http://" + p)
			}
			out := strings.Join(append(seen, authz.Log(), rl.Log()), "\n")
			if !strings.Contains(out, `"level":"DEBUG"`) && !strings.Contains(out, `"level":"INFO"`) {
				t.Fatalf("no log captured:\n%s", out)
			}
			for _, secret := range []string{password, wrong} {
				if i := strings.Index(out, secret); i >= 0 {
					t.Errorf("a credential was printed: …%s…", out[max(0, i-120):min(len(out), i+40)])
				}
			}
		})
	}
}
