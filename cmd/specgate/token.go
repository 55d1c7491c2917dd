package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/extauthz/devissuer"
)

func newTokenCmd() *cobra.Command {
	var (
		keyFile, issuer, aud, sub, scope, clientID string
		ttl                                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a token with the local dev key (make run)",
		Example: `  specgate token --sub alice --scope "orders:read orders:write"
  curl -H "Authorization: Bearer $(specgate token --sub alice --scope orders:read)" localhost:8080/orders/1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sub == "" && clientID == "" {
				return fmt.Errorf("token: give --sub or --client-id")
			}
			k, err := devissuer.LoadOrCreate(keyFile)
			if err != nil {
				return err
			}
			var extra map[string]any
			if clientID != "" {
				extra = map[string]any{"client_id": clientID}
			}
			tok, err := devissuer.Mint(k, issuer, aud, sub, strings.Fields(scope), ttl, extra)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "subject (sub claim)")
	f.StringVar(&scope, "scope", "", `space-separated scopes, e.g. "orders:read orders:write"`)
	f.StringVar(&clientID, "client-id", "", "client_id claim (alone: a client-credentials token)")
	f.StringVar(&keyFile, "key", ".run/dev-key.pem", "dev signing key (PEM; created if missing)")
	f.StringVar(&issuer, "issuer", devissuer.Issuer, "iss claim")
	f.StringVar(&aud, "aud", devissuer.Audience, "aud claim")
	f.DurationVar(&ttl, "ttl", time.Hour, "lifetime")
	return cmd
}
