package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/ratelimit"
)

func newRateLimitCmd() *cobra.Command {
	var (
		o          ratelimit.Options
		configPath string
	)
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Run the rate-limit service (Envoy's RateLimitService)",
		Long: "Run the rate-limit service. Limits come from the control plane (--xds) or from a\n" +
			"RateLimitConfig file (--limits, reloaded on SIGHUP); counters live in memory or in\n" +
			"the Redis of gateway.yaml's rateLimit.store.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.XDSAddr == "") == (o.LimitsFile == "") {
				return errors.New("ratelimit: give exactly one of --xds and --limits")
			}
			var err error
			if o.Config, err = loadGatewayConfig(configPath); err != nil {
				return err
			}
			o.Logger = logger().With("role", "ratelimit")
			return ratelimit.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "gateway.yaml (default: built-in defaults, memory store)")
	f.StringVar(&o.XDSAddr, "xds", "", "control plane ADS address HOST:PORT")
	f.StringVar(&o.LimitsFile, "limits", "", "RateLimitConfig file (protojson as YAML or JSON)")
	f.StringVar(&o.GRPCAddr, "grpc", ":9003", "gRPC listen address")
	f.StringVar(&o.HTTPAddr, "http", ":9004", "HTTP listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&o.NodeID, "node-id", "", "xDS node id (default specgate-ratelimit-<hostname>)")
	return cmd
}
