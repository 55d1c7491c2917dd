package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/extauthz/revocation"
	"github.com/specgate/specgate/test/harness/testutil"
)

// specgate revoke says what it stored, in a line or (--output json) as the entry itself.
func TestRevokeOutput(t *testing.T) {
	key, err := devissuer.Generate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(devissuer.JWKS(key))
	t.Cleanup(jwks.Close)
	cfg := config.Default()
	cfg.Issuers = []config.Issuer{{Issuer: "https://issuer.test/", JWKSURI: jwks.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}}}
	cfg.Revocation.Store = "memory"
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- extauthz.Run(ctx, extauthz.Options{Config: cfg, GRPCListener: gl, HTTPListener: hl, AdminToken: "t0k",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() { cancel(); <-done })
	server := "http://" + hl.Addr().String()
	testutil.Eventually(t, 10*time.Second, "authz ready", func() bool {
		resp, err := http.Get(server + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	out, _, err := run(t, "revoke", "--server", server, "--token", "t0k", "--sub", "alice")
	const stamp = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	if err != nil || !regexp.MustCompile(`^revoked sub:alice: its tokens issued at or before `+stamp+` are refused until `+stamp+"\n$").MatchString(out) {
		t.Errorf("revoke --sub: %v %q", err, out)
	}
	out, _, err = run(t, "revoke", "--server", server, "--token", "t0k", "--jti", "abc", "-o", "json")
	var e revocation.Entry
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || e.Key != revocation.JTIKey("abc") || !e.Expires.After(time.Now()) {
		t.Errorf("revoke --jti -o json: %v %q", err, out)
	}
	if out, _, err = run(t, "revoke", "--server", server, "--token", "t0k", "--jti", "abc"); err != nil || !strings.HasPrefix(out, "revoked jti:abc: refused until ") {
		t.Errorf("revoke --jti: %v %q", err, out)
	}
}
