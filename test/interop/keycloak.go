//go:build interop

// Package interop drives the whole gateway with a real identity provider: Keycloak, from its
// official distribution (make interop fetches it into .tools/keycloak; it needs Java 17+).
// It is its own suite, `make interop`, behind the interop build tag: make test does not
// build it.
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// keycloak is a Keycloak server in dev mode (in-memory database) on a loopback port.
type keycloak struct {
	t     *testing.T
	base  string // http://127.0.0.1:port
	admin string // admin access token of the master realm
	log   *testenvoy.LogBuffer
}

// startKeycloak runs kc.sh start-dev until the test ends. Its issuer URLs use base whatever
// host name a client asks (hostname is set), as production should.
func startKeycloak(t *testing.T) *keycloak {
	t.Helper()
	kc := testutil.Tool(t, "KEYCLOAK_KC", "keycloak/bin/kc.sh", "kc.sh", "interop")
	port := testutil.FreePort(t)
	k := &keycloak{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port), log: &testenvoy.LogBuffer{}}
	cmd := exec.Command(kc, "start-dev", "--db=dev-mem", "--http-host=127.0.0.1", "--http-port="+strconv.Itoa(port),
		"--hostname="+k.base, "--cache=local")
	cmd.Env = append(os.Environ(), "KC_BOOTSTRAP_ADMIN_USERNAME=admin", "KC_BOOTSTRAP_ADMIN_PASSWORD=admin")
	cmd.Stdout, cmd.Stderr = k.log, k.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kc.sh starts java: stop both
	if err := cmd.Start(); err != nil {
		t.Fatalf("start keycloak: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("keycloak log:\n%s", k.log.String())
		}
	})
	deadline := time.Now().Add(4 * time.Minute)
	for {
		if resp, err := http.Get(k.base + "/realms/master/.well-known/openid-configuration"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keycloak not up within 4 minutes:\n%s", k.log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	tok := k.token("master", url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {"admin"}, "password": {"admin"}})
	k.admin = tok["access_token"].(string)
	return k
}

// token calls a realm's token endpoint and returns the JSON answer; a non-200 fails the test.
func (k *keycloak) token(realm string, form url.Values) map[string]any {
	k.t.Helper()
	out, status := k.tryToken(realm, form)
	if status != 200 {
		k.t.Fatalf("token %s %v: %d %v", realm, form.Get("grant_type"), status, out)
	}
	return out
}

func (k *keycloak) tryToken(realm string, form url.Values) (map[string]any, int) {
	k.t.Helper()
	resp, err := http.PostForm(k.base+"/realms/"+realm+"/protocol/openid-connect/token", form)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out, resp.StatusCode
}

// api calls the admin REST API and returns the body and, for a creation, the new id (the last
// segment of Location).
func (k *keycloak) api(method, p string, body any) (string, []byte) {
	k.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			k.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, k.base+"/admin/realms"+p, r)
	if err != nil {
		k.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		k.t.Fatalf("%s %s: %d %s", method, p, resp.StatusCode, out)
	}
	return path.Base(resp.Header.Get("Location")), out
}

// realm is the test's realm: an API audience, an optional client scope orders:read, a
// client-credentials client and a password-grant client, and a user.
type realm struct {
	name, issuer, audience string
	ccClient, ccSecret     string
	webClient              string
	user, password         string
}

func (k *keycloak) setUpRealm() realm {
	k.t.Helper()
	r := realm{name: "shop", audience: "orders-api", ccClient: "billing", ccSecret: "billing-secret",
		webClient: "web", user: "alice", password: "alice-password"}
	r.issuer = k.base + "/realms/" + r.name
	k.api("POST", "", map[string]any{"realm": r.name, "enabled": true, "accessTokenLifespan": 600})
	scopeID, _ := k.api("POST", "/"+r.name+"/client-scopes", map[string]any{"name": "orders:read", "protocol": "openid-connect",
		"attributes": map[string]string{"include.in.token.scope": "true", "display.on.consent.screen": "false"}})
	audience := map[string]any{"name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
		"config": map[string]string{"included.custom.audience": r.audience, "access.token.claim": "true", "id.token.claim": "false"}}
	for _, c := range []map[string]any{
		{"clientId": r.ccClient, "secret": r.ccSecret, "publicClient": false, "serviceAccountsEnabled": true,
			"standardFlowEnabled": false, "directAccessGrantsEnabled": false, "protocolMappers": []any{audience}},
		{"clientId": r.webClient, "publicClient": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": true,
			"protocolMappers": []any{audience}},
	} {
		id, _ := k.api("POST", "/"+r.name+"/clients", c)
		k.api("PUT", fmt.Sprintf("/%s/clients/%s/optional-client-scopes/%s", r.name, id, scopeID), nil)
	}
	k.api("POST", "/"+r.name+"/users", map[string]any{"username": r.user, "enabled": true, "email": "alice@example.com",
		"emailVerified": true, "firstName": "Alice", "lastName": "Example",
		"credentials": []any{map[string]any{"type": "password", "value": r.password, "temporary": false}}})
	return r
}

// clientToken is a client-credentials access token asking for scope ("" for none).
func (k *keycloak) clientToken(r realm, scope string) string {
	k.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {r.ccClient}, "client_secret": {r.ccSecret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return k.token(r.name, form)["access_token"].(string)
}

// userToken is a password-grant access token of the realm's user through the web client.
func (k *keycloak) userToken(r realm, scope string) string {
	k.t.Helper()
	form := url.Values{"grant_type": {"password"}, "client_id": {r.webClient}, "username": {r.user}, "password": {r.password}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return k.token(r.name, form)["access_token"].(string)
}

// rotateKeys adds an RSA key provider with a higher priority than the realm's: Keycloak signs
// with its key from now on, the old one still verifying (its usual rotation).
func (k *keycloak) rotateKeys(r realm) {
	k.t.Helper()
	_, b := k.api("GET", "/"+r.name, nil)
	var rep struct{ ID string }
	if err := json.Unmarshal(b, &rep); err != nil || rep.ID == "" {
		k.t.Fatalf("realm id: %v %s", err, b)
	}
	k.api("POST", "/"+r.name+"/components", map[string]any{"name": "rsa-rotated", "providerId": "rsa-generated",
		"providerType": "org.keycloak.keys.KeyProvider", "parentId": rep.ID,
		"config": map[string][]string{"priority": {"500"}, "keySize": {"2048"}, "active": {"true"}, "enabled": {"true"}}})
}

// claims reads a token's payload without verification (the test inspects what Keycloak sent).
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	msg, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Payload(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}
