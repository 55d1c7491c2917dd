package extauthz

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/specgate/specgate/extauthz/feed"
	"github.com/specgate/specgate/test/harness/testutil"
)

// The Envoy plugin's feed: only its credential (derived from the admin token, never the admin
// token itself) reads it; the first answer holds the issuer's keys and every token revocation,
// never an API key; the next, asked with its epoch and seq, only what changed since.
func TestPluginFeed(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	r := startReplica(t, testConfig(p), "")
	get := func(cred, query string) (int, feed.Feed) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, r.http+feed.Path+query, nil)
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var f feed.Feed
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&f); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, f
	}
	for _, cred := range []string{"", adminToken, "wrong"} {
		if code, _ := get(cred, ""); code != http.StatusUnauthorized {
			t.Errorf("credential %q: %d, want 401", cred, code)
		}
	}
	cred := feed.Credential(adminToken)

	tok := mint(t, p.key, "alice", []string{"orders:read"}, nil)
	if code, body := r.revoke(t, adminToken, map[string]string{"token": tok}); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, body := r.createKey(t, map[string]any{"client": "shop-app"}); code != 201 {
		t.Fatalf("create key: %d %s", code, body)
	}
	var first feed.Feed
	testutil.Eventually(t, 10*time.Second, "the feed with the issuer's keys", func() bool {
		_, first = get(cred, "")
		return len(first.Keys[testIss]) > 0
	})
	if !first.Full || len(first.Revocations) != 1 || first.Revocations[0].Key != "jti:"+jtiOf(t, tok) {
		t.Fatalf("first answer: full=%v revocations %+v, want the one jti (no API key)", first.Full, first.Revocations)
	}

	code, none := get(cred, feed.Query(first.Epoch, first.Seq))
	if code != 200 || none.Full || len(none.Revocations) != 0 {
		t.Errorf("nothing changed: %d full=%v %+v", code, none.Full, none.Revocations)
	}
	if code, body := r.revoke(t, adminToken, map[string]string{"sub": "bob"}); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	_, delta := get(cred, feed.Query(first.Epoch, first.Seq))
	if delta.Full || len(delta.Revocations) != 1 || delta.Revocations[0].Key != "sub:bob" || delta.Seq <= first.Seq {
		t.Errorf("delta: full=%v seq %d→%d %+v, want sub:bob only", delta.Full, first.Seq, delta.Seq, delta.Revocations)
	}
	if _, other := get(cred, feed.Query("1", first.Seq)); !other.Full || len(other.Revocations) != 2 {
		t.Errorf("another epoch: full=%v %d revocations, want the whole set (2)", other.Full, len(other.Revocations))
	}
}
