package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/extauthz"
)

func newAuthzCmd() *cobra.Command {
	var (
		o          extauthz.Options
		configPath string
	)
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Run the authorization service (Envoy's ext_authz)",
		Long: "Run the authorization service: JWT verification against the issuers of gateway.yaml,\n" +
			"each route's scope policy, revocation (POST /v1/revocations, bearer $SPECGATE_ADMIN_TOKEN),\n" +
			"metrics and probes. --dev-key also serves that key's JWKS for `specgate token`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Config, err = loadGatewayConfig(configPath); err != nil {
				return err
			}
			o.AdminToken = os.Getenv("SPECGATE_ADMIN_TOKEN")
			o.Logger = logger().With("role", "authz")
			return extauthz.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "gateway.yaml (required: it names the issuers and the revocation store)")
	f.StringVar(&o.GRPCAddr, "grpc", ":9001", "gRPC listen address (ext_authz Check, gRPC health)")
	f.StringVar(&o.HTTPAddr, "http", ":9002", "HTTP listen address (/metrics, /healthz, /readyz, /v1/revocations)")
	f.StringVar(&o.DevKeyFile, "dev-key", "", "dev signing key (PEM, created if missing) whose JWKS to serve at /.well-known/jwks.json")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
