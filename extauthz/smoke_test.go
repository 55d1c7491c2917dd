package extauthz

import "testing"

func TestSmoke(t *testing.T) {
	p := newIdP(t)
	_, c := startServer(t, deps{cfg: testConfig(p)})
	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	r := check(t, c, bearerReq(t, protectedRoute, tok))
	if httpStatus(r) != 200 {
		t.Fatalf("got %v", r)
	}
	t.Log(r)
}
