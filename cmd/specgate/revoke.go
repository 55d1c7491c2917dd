package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/extauthz/revocation"
)

func newRevokeCmd() *cobra.Command {
	var server, jti, sub, issuer, jwt, token, before, output string
	var bySubject bool
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a token (--jti, --jwt) or every token of a subject issued before now (--sub, --jwt T --subject)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			body := map[string]any{}
			for k, v := range map[string]string{"jti": jti, "sub": sub, "token": jwt} {
				if v != "" {
					body[k] = v
				}
			}
			if len(body) != 1 {
				return errors.New("revoke: give exactly one of --jti, --sub and --jwt")
			}
			if bySubject {
				if jwt == "" {
					return errors.New("revoke: --subject goes with --jwt")
				}
				body["bySubject"] = true
			}
			if issuer != "" {
				if sub == "" {
					return errors.New("revoke: --issuer goes with --sub")
				}
				body["issuer"] = issuer
			}
			if before != "" {
				if sub == "" {
					return errors.New("revoke: --before goes with --sub")
				}
				if _, err := time.Parse(time.RFC3339, before); err != nil {
					return fmt.Errorf("revoke: --before: %w", err)
				}
				body["before"] = before
			}
			if token == "" {
				token = os.Getenv("SPECGATE_ADMIN_TOKEN")
			}
			out, err := postRevocation(cmd.Context(), server, token, body)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), out)
				return err
			}
			var e revocation.Entry
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				return fmt.Errorf("revoke: bad answer %q: %v", out, err)
			}
			until := e.Expires.UTC().Format(time.RFC3339)
			if strings.HasPrefix(e.Key, revocation.PrefixSubject) {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked %s: its tokens issued at or before %s are refused until %s\n",
					e.Key, e.At.UTC().Format(time.RFC3339), until)
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked %s: refused until %s\n", e.Key, until)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "http://127.0.0.1:9002", "authz admin URL")
	f.StringVar(&jti, "jti", "", "token id to revoke")
	f.StringVar(&sub, "sub", "", "subject whose tokens issued until now (or --before) to revoke")
	f.StringVar(&before, "before", "", "with --sub: revoke tokens issued at or before this RFC 3339 time")
	f.StringVar(&issuer, "issuer", "", "with --sub: the subject's issuer (required when gateway.yaml trusts several)")
	f.StringVar(&jwt, "jwt", "", "the token itself (its jti, or the hash of what it signs when it has none)")
	f.BoolVar(&bySubject, "subject", false, "with --jwt: every token of that token's subject at its issuer, issued until now")
	f.StringVar(&token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
	f.StringVarP(&output, "output", "o", "text", "text or json (the stored entry: key, at, expires)")
	return cmd
}

func postRevocation(ctx context.Context, server, token string, body map[string]any) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	code, out, err := adminRequest(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/v1/revocations", token, body)
	if err != nil {
		return "", fmt.Errorf("revoke: %w", err)
	}
	if code/100 != 2 {
		return "", fmt.Errorf("revoke: %w", adminError(code, out, token))
	}
	return strings.TrimSpace(string(out)), nil
}
