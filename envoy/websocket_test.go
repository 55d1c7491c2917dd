package envoy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/specgate/specgate/test/harness/stack"
)

const webSocketSpec = `openapi: 3.1.0
info: {title: Chat, version: 1.0.0}
x-specgate: {service: chat, backend: "http://127.0.0.1:{{PORT}}", basePath: /chat}
security: [{oauth: ["chat:read"]}]
components:
  securitySchemes:
    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: "https://a.test/token", scopes: {"chat:read": r}}}}
paths:
  /live:
    get: {operationId: live, x-specgate: {websocket: {idleTimeout: 2s, maxDuration: 5s}}, responses: {"101": {description: upgraded}}}
  /history:
    get: {operationId: history, responses: {"200": {description: ok}}}
`

// x-specgate websocket through real Envoy: an upgrade with a valid token carries frames both
// ways and X-User-Id reaches the backend; without a token, or on an operation without
// websocket, the upgrade is refused with the gateway's JSON; after a revocation new upgrades
// are refused while an open connection lasts until its bounds (idleTimeout, maxDuration).
func TestWebSocketUpgrades(t *testing.T) {
	t.Parallel()
	users := make(chan string, 8)
	backend := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) {
		users <- c.Request().Header.Get("X-User-Id")
		_, _ = io.Copy(c, c) // echo until either side closes
	}))
	t.Cleanup(backend.Close)
	port := backend.URL[strings.LastIndex(backend.URL, ":")+1:]
	s := stack.Start(t, stack.Options{Specs: map[string]string{"chat.yaml": webSocketSpec}, Vars: map[string]string{"PORT": port}})
	token := s.Token("alice", "chat:read")

	dial := func(path, token string) (*websocket.Conn, error) {
		cfg, err := websocket.NewConfig(strings.Replace(s.Public, "http", "ws", 1)+path, "http://client.test/")
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			cfg.Header.Set("Authorization", "Bearer "+token)
		}
		return websocket.DialConfig(cfg)
	}
	echo := func(c *websocket.Conn, msg string) error {
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			t.Errorf("echo: %q, want %q", buf, msg)
		}
		return nil
	}
	// upgrade sends an upgrade request with net/http, to read a refusal's status and body.
	upgrade := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", s.Public+path, nil)
		for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
			req.Header.Set(k, v)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	jsonError := func(body string) string {
		var v struct{ Error string }
		_ = json.Unmarshal([]byte(body), &v)
		return v.Error
	}

	c, err := dial("/chat/live", token)
	if err != nil {
		code, body := upgrade("/chat/live", token)
		t.Fatalf("upgrade with a token: %v (%d %s)", err, code, body)
	}
	defer c.Close()
	if err := echo(c, "hello"); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if u := <-users; u != "alice" {
		t.Errorf("the backend saw X-User-Id %q, want alice", u)
	}
	if code, body := upgrade("/chat/live", ""); code != 401 || jsonError(body) != "invalid_token" {
		t.Errorf("upgrade without a token: %d %s", code, body)
	}
	if code, body := upgrade("/chat/history", token); code != 403 || jsonError(body) != "upgrade_not_supported" {
		t.Errorf("upgrade on an operation without websocket: %d %s", code, body)
	}

	// Revoke alice: new upgrades are refused, the open connection still echoes.
	b, _ := json.Marshal(map[string]string{"sub": "alice"})
	req, _ := http.NewRequest("POST", "http://"+s.Authz[0].HTTP+"/v1/revocations", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+stack.AdminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := upgrade("/chat/live", token)
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgrades with the revoked token still answered %d after 5 s", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := echo(c, "still open"); err != nil {
		t.Errorf("the open connection after the revocation: %v", err)
	}

	// Bounds: a fresh connection (a new token) kept busy is closed at maxDuration (5 s); one
	// left idle is closed after idleTimeout (2 s).
	busy, err := dial("/chat/live", s.Token("bob", "chat:read"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	<-users
	opened := time.Now()
	for err == nil && time.Since(opened) < 10*time.Second {
		time.Sleep(500 * time.Millisecond)
		err = echo(busy, "tick")
	}
	if lived := time.Since(opened); err == nil || lived < 4*time.Second || lived > 8*time.Second {
		t.Errorf("a busy connection lived %s (%v), want it closed at maxDuration 5s", lived.Round(100*time.Millisecond), err)
	}
	idle, err := dial("/chat/live", s.Token("carol", "chat:read"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	<-users
	opened = time.Now()
	_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = idle.Read(make([]byte, 1))
	var ne net.Error
	if lived := time.Since(opened); err == nil || (errors.As(err, &ne) && ne.Timeout()) || lived < 1500*time.Millisecond || lived > 5*time.Second {
		t.Errorf("an idle connection lived %s (%v), want it closed after idleTimeout 2s", lived.Round(100*time.Millisecond), err)
	}
}
