package chaos

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/test/harness/e2e"
	"github.com/specgate/specgate/test/harness/stack"
)

// push PUTs a spec to the control plane's API.
func push(t *testing.T, s *stack.Stack, service, spec string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", s.PushURL+"/v1/specs/"+service+"?allowRisky=true", strings.NewReader(spec))
	req.Header.Set("Authorization", "Bearer "+stack.AdminToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Scenario 5. Ten spec pushes under load, each moving the shop service to the other of two
// backends: not one request fails, and both backends answer.
func TestPushesUnderLoad(t *testing.T) {
	a, b := e2e.NewBackend(t, "a"), e2e.NewBackend(t, "b")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec},
		Vars: map[string]string{"PORT": a.Port(), "LIMIT": perSecond}, Configure: tolerant})
	alice := s.Token("alice", "orders:read")
	specFor := func(be *e2e.Backend) string {
		return strings.NewReplacer("{{PORT}}", be.Port(), "{{LIMIT}}", perSecond).Replace(stack.ShopSpec)
	}
	l := startLoad(t, loadRPS,
		target{name: "protected", url: s.Public + "/shop/orders", token: alice},
		target{name: "anonymous", url: s.Public + "/shop/open"})
	l.hold(phaseTime / 2)
	l.setPhase("pushing")
	const pushes = 10
	gap := pick(300*time.Millisecond, 2*time.Second)
	var versions []string
	for i := range pushes {
		be := []*e2e.Backend{b, a}[i%2]
		code, body := push(t, s, "shop", specFor(be))
		if code != 200 {
			t.Errorf("push %d: %d %s", i, code, body)
		}
		if v := pushVersion(body); len(versions) == 0 || versions[len(versions)-1] != v {
			versions = append(versions, v)
		}
		l.hold(gap)
	}
	l.setPhase("after")
	l.hold(phaseTime / 2)
	l.halt()
	l.report()
	t.Logf("%d pushes, versions served in turn: %v; backend hits a=%d b=%d", pushes, versions, a.Hits(), b.Hits())

	for _, ph := range []string{"up", "pushing", "after"} {
		l.only(ph, "protected", 200)
		l.only(ph, "anonymous", 200)
	}
	if a.Hits() == 0 || b.Hits() == 0 {
		t.Errorf("traffic did not alternate: backend a %d hits, b %d", a.Hits(), b.Hits())
	}
}

// pushVersion extracts "version" from a push answer (short form for the log).
func pushVersion(body string) string {
	_, after, ok := strings.Cut(body, `"version":"`)
	if !ok {
		return "?"
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}
