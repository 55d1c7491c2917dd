package extauthz

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/devissuer"
	"github.com/specgate/specgate/policy"
)

// With two trusted issuers, two users both called alice are two identities: rate-limit
// buckets and subject revocations are per issuer, and the backend learns the issuer from
// X-Token-Issuer, which a client cannot set itself.
func TestIssuerQualifiedIdentity(t *testing.T) {
	t.Parallel()
	staff, customers := newIdP(t), newIdP(t)
	const staffIss, customersIss = "https://staff.example/", "https://customers.example/"
	cfg := testConfig(staff)
	cfg.Issuers = []config.Issuer{
		{Issuer: staffIss, JWKSURI: staff.url(), Audiences: []string{testAud}},
		{Issuer: customersIss, JWKSURI: customers.url(), Audiences: []string{testAud}},
	}
	r := startReplica(t, cfg, "")
	token := func(p *testIdP, iss string) string {
		tok, err := devissuer.Mint(p.key, iss, testAud, "alice", []string{"orders:read"}, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	staffAlice, customerAlice := token(staff, staffIss), token(customers, customersIss)
	answer := func(tok string) *authv3.CheckResponse {
		return check(t, r.c, request(t, protectedRoute, map[string]string{"authorization": "Bearer " + tok, "x-token-issuer": staffIss}))
	}
	for tok, iss := range map[string]string{staffAlice: staffIss, customerAlice: customersIss} {
		a := answer(tok)
		if httpStatus(a) != 200 {
			t.Fatalf("%s's alice: %d", iss, httpStatus(a))
		}
		if got := okHeaders(a)["X-Token-Issuer"]; got != iss {
			t.Errorf("%s's alice: X-Token-Issuer %q (the client sent %q)", iss, got, staffIss)
		}
		client := a.GetDynamicMetadata().GetFields()[policy.MetaClient].GetStringValue()
		if client != "sub:"+iss+"|alice" {
			t.Errorf("%s's alice counts as rate-limit client %q", iss, client)
		}
	}

	if code, body := r.revoke(t, adminToken, map[string]string{"sub": "alice"}); code != 400 || !strings.Contains(body, "issuer") {
		t.Errorf("a subject revocation without issuer: %d %s, want 400 asking for the issuer", code, body)
	}
	if code, body := r.revoke(t, adminToken, map[string]string{"sub": "alice", "issuer": "https://nobody.example/"}); code != 400 {
		t.Errorf("an unknown issuer: %d %s, want 400", code, body)
	}
	if code, body := r.revoke(t, adminToken, map[string]string{"sub": "alice", "issuer": customersIss}); code != 200 {
		t.Fatalf("revoke customers' alice: %d %s", code, body)
	}
	if got := r.status(t, customerAlice); got != 401 {
		t.Errorf("revoked customers' alice: %d, want 401", got)
	}
	if got := r.status(t, staffAlice); got != 200 {
		t.Errorf("staff's alice after customers' alice was revoked: %d, want 200", got)
	}
}

// With one issuer nothing changes: bare subjects, and X-Token-Issuer still set.
func TestSingleIssuerIdentityUnchanged(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	r := startReplica(t, testConfig(p), "")
	a := check(t, r.c, bearerReq(t, protectedRoute, mint(t, p.key, "alice", []string{"orders:read"}, nil)))
	if client := a.GetDynamicMetadata().GetFields()[policy.MetaClient].GetStringValue(); client != "sub:alice" {
		t.Errorf("client key %q, want sub:alice", client)
	}
	if got := okHeaders(a)["X-Token-Issuer"]; got != testIss {
		t.Errorf("X-Token-Issuer %q, want %q", got, testIss)
	}
}
