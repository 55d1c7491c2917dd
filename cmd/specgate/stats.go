package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/extauthz/stats"
)

func newStatsCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Summarise the authz service's metrics: decisions by reason, latency, revocations, JWKS state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+"/metrics", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("stats: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("stats: GET /metrics: %s", resp.Status)
			}
			return stats.Summarize(io.LimitReader(resp.Body, 64<<20), cmd.OutOrStdout(), time.Now())
		},
	}
	cmd.Flags().StringVar(&server, "server", "http://127.0.0.1:9002", "authz HTTP URL")
	return cmd
}
