package main

import (
	"github.com/spf13/cobra"

	"github.com/specgate/specgate/validate"
)

func newValidateCmd() *cobra.Command {
	var o validate.Options
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Run the request validator (Envoy's external processor)",
		Long: "Run the request validator: Envoy's ext_proc filter asks it about each request to an\n" +
			"operation with x-specgate validate: request, and it answers 400 or 415 with an RFC 9457\n" +
			"problem when the request breaks the operation's OpenAPI description. The descriptions\n" +
			"come from the control plane (--xds), with the routes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Logger = logger().With("role", "validate")
			return validate.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.XDSAddr, "xds", "127.0.0.1:18000", "control plane ADS address HOST:PORT")
	f.StringVar(&o.GRPCAddr, "grpc", ":9005", "gRPC listen address (Envoy's ext_proc)")
	f.StringVar(&o.HTTPAddr, "http", ":9006", "HTTP listen address (/metrics, /healthz, /readyz)")
	f.StringVar(&o.NodeID, "node-id", "", "xDS node id (default specgate-validate-<hostname>)")
	return cmd
}
