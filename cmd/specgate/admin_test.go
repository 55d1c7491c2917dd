package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A 401 from an admin API says what to do about it, not only "401 unauthorized".
func TestAdminCommandsExplain401(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized"}`))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("SPECGATE_ADMIN_TOKEN", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "--server", srv.URL, "--jti", "x"}, "no admin token was sent; set SPECGATE_ADMIN_TOKEN"},
		{[]string{"revoke", "--server", srv.URL, "--jti", "x", "--token", "wrong"}, "the admin token was refused"},
		{[]string{"push", "--server", srv.URL, "../../examples/specs/orders.yaml"}, "no admin token was sent; set SPECGATE_ADMIN_TOKEN"},
	} {
		_, stderr, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error()+stderr, c.want) {
			t.Errorf("%v: %v %q, want %q", c.args, err, stderr, c.want)
		}
	}
}
