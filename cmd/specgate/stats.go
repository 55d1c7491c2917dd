package main

import (
	"bytes"
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
	var (
		servers           []string
		output, prom, sel string
		since             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stats [--server URL]... [--output text|json]",
		Short: "Summarise the authz replicas' metrics: decisions by reason, latency, refusals, revocations, JWKS state",
		Long: `Summarise the metrics of one authz replica, or of several added up (--server once per
replica, e.g. each pod of the headless Service specgate-authz): decisions by reason,
latency, denied routes, refused issuers and audiences, the token cache, revocations and
each issuer's JWKS. Counters run from each replica's start. With --prometheus, the figures
are of the last --since across every replica that Prometheus scrapes (on GKE, Managed Service
for Prometheus's frontend), narrowed by --selector.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var s *stats.Summary
			if prom != "" {
				var err error
				if s, err = stats.FromPrometheus(ctx, prom, sel, since); err != nil {
					return err
				}
				return write(cmd.OutOrStdout(), s, output)
			}
			var bodies []io.Reader
			for _, server := range servers {
				b, err := scrape(ctx, strings.TrimSuffix(server, "/")+"/metrics")
				if err != nil {
					return fmt.Errorf("stats: %s: %w", server, err)
				}
				bodies = append(bodies, bytes.NewReader(b))
			}
			s, err := stats.Read(bodies...)
			if err != nil {
				return err
			}
			return write(cmd.OutOrStdout(), s, output)
		},
	}
	cmd.Flags().StringArrayVar(&servers, "server", []string{"http://127.0.0.1:9002"}, "authz HTTP URL (repeat for each replica)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&prom, "prometheus", "", "a Prometheus API URL: the last --since across every replica it scrapes, instead of --server")
	cmd.Flags().DurationVar(&since, "since", 15*time.Minute, "with --prometheus: the window")
	cmd.Flags().StringVar(&sel, "selector", "", `with --prometheus: label matchers every series must have, e.g. namespace="specgate"`)
	return cmd
}

func write(w io.Writer, s *stats.Summary, output string) error {
	if output == "json" {
		return s.WriteJSON(w)
	}
	return s.WriteText(w, time.Now())
}

// scrape is the body of GET url.
func scrape(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}
