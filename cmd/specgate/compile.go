package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/atomicfile"
)

// compileOptions: what the control plane checks, with cfg (gateway.yaml, or the defaults):
// its backend policy and shared prefixes, and the plan. strict adds the warnings of a
// whole-document OpenAPI validation.
func compileOptions(strict bool, cfg config.Gateway) compiler.Options {
	return compiler.Options{Strict: strict, Gateway: &cfg, Policy: compiler.PolicyOf(cfg)}
}

// report is what lint and compile found: with --output json (lint) or --diagnostics json
// (compile), one document.
type report struct {
	OK          bool                  `json:"ok"`
	Services    int                   `json:"services"`
	Operations  int                   `json:"operations"`
	Diagnostics []compiler.Diagnostic `json:"diagnostics"`
}

// newReport sums up a compilation: err is a translation error when no diagnostic says it.
func newReport(out *compiler.Output, diags compiler.Diagnostics, err error) report {
	r := report{OK: err == nil && !diags.HasErrors(), Diagnostics: append(compiler.Diagnostics{}, diags...)}
	if err != nil && !diags.HasErrors() {
		r.Diagnostics = append(r.Diagnostics, compiler.Diagnostic{Severity: compiler.Error, Message: err.Error()})
	}
	if r.OK {
		r.Services = len(out.Model.Services)
		for _, s := range out.Model.Services {
			r.Operations += len(s.Operations)
		}
	}
	return r
}

// writeText prints every diagnostic, one line each; exit code 1 when the specs are refused.
func (r report) writeText(w io.Writer) error {
	for _, d := range r.Diagnostics {
		fmt.Fprintln(w, d.String())
	}
	if !r.OK {
		return exitCode(1)
	}
	return nil
}

// writeJSON writes the report as one document; exit code 1 when the specs are refused.
func (r report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	if !r.OK {
		return exitCode(1)
	}
	return nil
}

func newLintCmd() *cobra.Command {
	var (
		specs, gatewayConfig, output string
		strict                       bool
	)
	cmd := &cobra.Command{
		Use:   "lint --specs DIR [--strict] [--config gateway.yaml]",
		Short: "Validate every OpenAPI file of DIR; exit 1 with one line per error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			cfg, err := loadGatewayConfig(gatewayConfig)
			if err != nil {
				return err
			}
			files, err := compiler.ReadDir(specs)
			if err != nil {
				return err
			}
			// Translation checks what the model cannot (Envoy's own constraints).
			out, diags, err := compiler.CompileEnvoy(specs, files, compileOptions(strict, cfg), translate.Options{})
			res := newReport(out, diags, err)
			if output == "json" {
				return res.writeJSON(cmd.OutOrStdout())
			}
			if err := res.writeText(cmd.ErrOrStderr()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d services, %d operations\n", res.Services, res.Operations)
			return nil
		},
	}
	cmd.Flags().StringVar(&specs, "specs", "specs", "directory of OpenAPI files")
	cmd.Flags().BoolVar(&strict, "strict", false, "also validate what the gateway does not use (schemas, examples, defaults, patterns, formats), as warnings")
	cmd.Flags().StringVar(&gatewayConfig, "config", "", "gateway.yaml whose backend policy and shared prefixes to check (default: the built-in defaults, as the control plane's)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (one line per problem, on stderr) or json (one document on stdout; exit codes the same)")
	return cmd
}

func newCompileCmd() *cobra.Command {
	var (
		specs, format, out, gatewayConfig, listen, diagnostics string
		bo                                                     translate.BootstrapOptions
	)
	cmd := &cobra.Command{
		Use:   "compile --specs DIR --format bootstrap|resources|ratelimit -o FILE",
		Short: "Compile the specs into Envoy configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if diagnostics != "text" && diagnostics != "json" {
				return fmt.Errorf("--diagnostics %q: want text or json", diagnostics)
			}
			cfg, err := loadGatewayConfig(gatewayConfig)
			if err != nil {
				return err
			}
			files, err := compiler.ReadDir(specs)
			if err != nil {
				return err
			}
			compiled, diags, err := compiler.CompileEnvoy(specs, files, compileOptions(false, cfg),
				translate.Options{ListenAddress: listen, InlineRoutes: format == "bootstrap"})
			r := newReport(compiled, diags, err)
			if diagnostics == "json" {
				err = r.writeJSON(cmd.ErrOrStderr())
			} else {
				err = r.writeText(cmd.ErrOrStderr())
			}
			if err != nil {
				return err
			}
			res := compiled.Resources
			var b []byte
			switch format {
			case "bootstrap":
				boot, err := translate.Bootstrap(res, bo)
				if err != nil {
					return err
				}
				b, err = translate.YAML(boot)
				if err != nil {
					return err
				}
			case "resources":
				b, err = res.YAML()
			case "ratelimit":
				b, err = translate.YAML(res.RateLimit)
			default:
				return fmt.Errorf("--format %q: must be bootstrap, resources or ratelimit", format)
			}
			if err != nil {
				return err
			}
			return writeOutput(cmd, out, b)
		},
	}
	f := cmd.Flags()
	f.StringVar(&specs, "specs", "specs", "directory of OpenAPI files")
	f.StringVar(&format, "format", "resources", "bootstrap, resources or ratelimit")
	f.StringVarP(&out, "output", "o", "-", "output file (- for stdout)")
	f.StringVar(&gatewayConfig, "config", "", "gateway.yaml (default: built-in defaults)")
	f.StringVar(&listen, "listen-address", "0.0.0.0", "IP the listeners bind")
	f.StringVar(&diagnostics, "diagnostics", "text", "how problems print on stderr: text (one line each) or json (one document, as lint --output json)")
	addPeerFlags(f, &bo)
	return cmd
}

// writeOutput writes b to stdout for "" or "-", else to the file out.
func writeOutput(cmd *cobra.Command, out string, b []byte) error {
	if out == "" || out == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	return atomicfile.WriteFile(out, b, 0o644)
}

func newBootstrapCmd() *cobra.Command {
	var (
		out, xdsAddr string
		delta        bool
		bo           translate.BootstrapOptions
	)
	cmd := &cobra.Command{
		Use:   "bootstrap --xds HOST:PORT -o FILE",
		Short: "Write the Envoy bootstrap that takes its config from the control plane over ADS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			boot, err := translate.ADSBootstrap(bo, xdsAddr, delta)
			if err != nil {
				return err
			}
			b, err := translate.YAML(boot)
			if err != nil {
				return err
			}
			return writeOutput(cmd, out, b)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "-", "output file (- for stdout)")
	f.StringVar(&xdsAddr, "xds", "127.0.0.1:18000", "control plane ADS address")
	f.BoolVar(&delta, "delta", false, "use delta xDS")
	f.StringVar(&bo.NodeID, "node-id", "specgate-envoy", "Envoy node id (envoy --service-node overrides it)")
	addPeerFlags(f, &bo)
	return cmd
}

// addPeerFlags registers where a bootstrap puts Envoy's admin and specgate's gRPC peers.
func addPeerFlags(f *pflag.FlagSet, bo *translate.BootstrapOptions) {
	f.StringVar(&bo.AdminAddress, "admin-address", "127.0.0.1:9901", "Envoy admin address: unix:/path (a Unix socket: nothing reaches it over the network), or a loopback HOST:PORT")
	f.StringVar(&bo.StatsAddress, "stats-address", "", "a listener serving only GET /ready and /stats/prometheus from the admin, for probes and Prometheus (e.g. 0.0.0.0:9902)")
	f.StringVar(&bo.AuthzAddress, "authz-address", "127.0.0.1:9001", "specgate authz gRPC address(es), comma-separated for replicas")
	f.StringVar(&bo.RateLimitAddr, "ratelimit-address", "127.0.0.1:9003", "specgate ratelimit gRPC address(es), comma-separated for replicas")
}
