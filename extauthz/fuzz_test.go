package extauthz

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/extauthz/devissuer"
)

// FuzzCheck feeds arbitrary Authorization values to the token path: nothing but the
// valid seed token may ever be accepted, and nothing may panic or return an error.
func FuzzCheck(f *testing.F) {
	// ES256: generating an RSA key in every fuzz worker is slow under coverage.
	k, err := devissuer.Generate("ES256")
	if err != nil {
		f.Fatal(err)
	}
	p := newIdP(f, k)
	s, err := newServer(context.Background(), deps{cfg: testConfig(p), refreshCooldown: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.close)
	good := mint(f, k, "alice", []string{"orders:read"}, nil)
	if r, _ := s.Check(context.Background(), bearerReq(f, protectedRoute, good)); httpStatus(r) != 200 {
		f.Fatal("seed token refused")
	}
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		"Bearer " + good,
		"Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + b64(`{"alg":"none"}`) + "." + parts[1] + ".",
		"Bearer " + b64(`{"alg":"HS256","kid":"`+k.KeyID()+`"}`) + "." + parts[1] + "." + parts[2],
		"Bearer " + b64(`{"alg":"RS256","kid":"`+k.KeyID()+`","crit":["exp"]}`) + "." + parts[1] + "." + parts[2],
		"Bearer " + parts[0] + "." + b64(`{"iss":"`+testIss+`","aud":"api","exp":99999999999,"scope":"orders:read"}`) + "." + parts[2],
		"Bearer " + good + "," + "Bearer " + good,
		"bearer " + good,
		"Bearer a.b.c",
		"Bearer ..",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		r, err := s.Check(context.Background(), request(t, protectedRoute, map[string]string{"authorization": auth}))
		if err != nil {
			t.Fatalf("error: %v", err)
		}
		if httpStatus(r) == 200 && auth != "Bearer "+good {
			t.Fatalf("accepted %q", auth)
		}
		if st := httpStatus(r); st != 200 && st != 401 {
			t.Fatalf("status %d", st)
		}
	})
}
