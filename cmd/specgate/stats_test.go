package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/extauthz/stats"
	"github.com/specgate/specgate/internal/e2e"
	"github.com/specgate/specgate/internal/stack"
)

// specgate stats adds up the authz replicas: through a real Envoy balancing over three of
// them, the checks of every replica are counted once, allows and denials apart.
func TestStatsAcrossReplicas(t *testing.T) {
	b := e2e.NewBackend(t, "shop")
	s := stack.Start(t, stack.Options{Specs: map[string]string{"shop.yaml": stack.ShopSpec},
		Vars: map[string]string{"PORT": b.Port(), "LIMIT": "1000"}, AuthzReplicas: 3,
		// A check slowed by a busy machine must not turn into a 503 that neither counts.
		Configure: func(c *config.Gateway) { c.Authz.Timeout = config.Duration{Duration: 2 * time.Second} }})
	alice := s.Token("alice", "orders:read")
	const allowed, denied = 30, 12
	for i := range allowed + denied {
		req, _ := http.NewRequest("GET", s.Public+"/shop/orders", nil)
		if i < allowed {
			req.Header.Set("Authorization", "Bearer "+alice)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	args := []string{"stats", "-o", "json"}
	for _, a := range s.Authz {
		args = append(args, "--server", "http://"+a.HTTP)
	}
	var got stats.Summary
	out, _, err := run(t, args...)
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if got.Replicas != 3 || got.Allowed != allowed || got.Denied != denied {
		t.Errorf("three replicas: %d replicas, %v allowed, %v denied; want 3, %d, %d\n%s", got.Replicas, got.Allowed, got.Denied, allowed, denied, out)
	}
}
