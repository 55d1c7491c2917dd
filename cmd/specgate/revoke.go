package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newRevokeCmd() *cobra.Command {
	var server, jti, sub, issuer, jwt, token, before string
	var bySubject bool
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a token (--jti, --jwt) or every token of a subject issued before now (--sub, --jwt T --subject)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			_, err = fmt.Fprintln(cmd.OutOrStdout(), out)
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
	return cmd
}

func postRevocation(ctx context.Context, server, token string, body map[string]any) (string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/v1/revocations", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("revoke: %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(out))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized {
			if token == "" {
				msg += ": no admin token was sent; set SPECGATE_ADMIN_TOKEN or --token"
			} else {
				msg += ": the admin token was refused; check SPECGATE_ADMIN_TOKEN against the server's"
			}
		}
		return "", fmt.Errorf("revoke: %s: %s", resp.Status, msg)
	}
	return msg, nil
}
