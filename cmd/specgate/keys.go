package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/extauthz"
)

// newKeysCmd manages API keys through authz's admin API: create (the key is printed once),
// list, revoke (refused on every replica within a second).
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys create|list|revoke --server URL",
		Short: "Create, list and revoke API keys (OpenAPI apiKey schemes)",
	}
	var server, token, output string
	call := func(cmd *cobra.Command, method, path string, body any, want int) ([]byte, error) {
		out, err := adminCall(cmd.Context(), method, strings.TrimSuffix(server, "/")+path, token, body, want)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return out, nil
	}
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&server, "server", "http://127.0.0.1:9002", "authz admin URL")
		c.Flags().StringVar(&token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
		c.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	}
	printJSON := func(cmd *cobra.Command, out []byte) error {
		_, err := cmd.OutOrStdout().Write(append(bytes.TrimSpace(out), '\n'))
		return err
	}

	var client, scopes, plan, expires string
	create := &cobra.Command{
		Use:   "create --client C [--scopes \"a b\"] [--plan P] [--expires 90d]",
		Short: "Create an API key and print it: it is shown only once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			life, err := parseLifetime(expires)
			if err != nil {
				return fmt.Errorf("keys create: --expires: %w", err)
			}
			at := time.Now().Add(life).UTC()
			out, err := call(cmd, http.MethodPost, "/v1/keys", map[string]any{"client": client, "scopes": strings.Fields(scopes), "plan": plan, "expires": at}, http.StatusCreated)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, out)
			}
			var k extauthz.KeyInfo
			if err := json.Unmarshal(out, &k); err != nil {
				return fmt.Errorf("keys create: bad answer: %v", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Key)
			fmt.Fprintf(cmd.ErrOrStderr(), "key %s for client %s, plan %q, scopes [%s], expires %s: store it now, it is not shown again\n",
				k.ID, k.Client, k.Plan, strings.Join(k.Scopes, " "), k.Expires.Format(time.RFC3339))
			return nil
		},
	}
	flags(create)
	create.Flags().StringVar(&client, "client", "", "the client the key identifies (rate limits, X-Client-Id)")
	create.Flags().StringVar(&scopes, "scopes", "", "space-separated scopes the key holds")
	create.Flags().StringVar(&plan, "plan", "", "the quota plan of its rate limits")
	create.Flags().StringVar(&expires, "expires", "90d", "lifetime: Nd (days) or a Go duration, at most 400d")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the API keys (their ids, never the keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := call(cmd, http.MethodGet, "/v1/keys", nil, http.StatusOK)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, out)
			}
			var l struct{ Keys []extauthz.KeyInfo }
			if err := json.Unmarshal(out, &l); err != nil {
				return fmt.Errorf("keys list: bad answer: %v", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCLIENT\tPLAN\tSCOPES\tCREATED\tEXPIRES\tSTATE")
			for _, k := range l.Keys {
				state := "active"
				if k.Revoked {
					state = "revoked"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Client, k.Plan, strings.Join(k.Scopes, " "),
					k.Created.Format(time.RFC3339), k.Expires.Format(time.RFC3339), state)
			}
			return tw.Flush()
		},
	}
	flags(list)

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key: refused on every authz replica within a second",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := call(cmd, http.MethodDelete, "/v1/keys/"+args[0], nil, http.StatusOK)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, out)
			}
			var k extauthz.KeyInfo
			if err := json.Unmarshal(out, &k); err != nil {
				return fmt.Errorf("keys revoke: bad answer: %v", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked key %s of client %s\n", k.ID, k.Client)
			return err
		},
	}
	flags(revoke)
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// parseLifetime reads Nd (days) or a Go duration.
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q: want a positive number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want Nd or a positive duration such as 720h", s)
	}
	return d, nil
}
