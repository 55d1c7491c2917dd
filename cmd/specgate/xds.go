package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/xds"
)

// loadGatewayConfig reads --config, or the defaults when it is empty.
func loadGatewayConfig(path string) (config.Gateway, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func newXDSCmd() *cobra.Command {
	var (
		specs, cfgPath string
		opts           xds.Options
	)
	cmd := &cobra.Command{
		Use:   "xds --specs DIR --config gateway.yaml",
		Short: "Run the control plane: ADS for Envoy, RLS config, spec watch, push API, metrics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadGatewayConfig(cfgPath)
			if err != nil {
				return err
			}
			opts.SpecDir, opts.Gateway, opts.Logger = specs, cfg, logger()
			opts.AdminToken = os.Getenv("SPECGATE_ADMIN_TOKEN")
			if opts.AdminToken == "" {
				opts.Logger.Warn("SPECGATE_ADMIN_TOKEN is empty: the push API refuses every call")
			}
			srv, err := xds.New(opts)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&specs, "specs", "specs", "directory of OpenAPI files (watched)")
	f.StringVar(&cfgPath, "config", "", "gateway.yaml (default: built-in defaults)")
	f.StringVar(&opts.GRPCAddr, "grpc", ":18000", "ADS gRPC address")
	f.StringVar(&opts.HTTPAddr, "http", ":18001", "push API and metrics address")
	f.StringVar(&opts.EnvoyBin, "envoy-validate", "", "Envoy binary to validate every candidate config with (recommended)")
	f.DurationVar(&opts.Debounce, "debounce", 200*time.Millisecond, "wait this long after a file change before recompiling")
	return cmd
}

func newPushCmd() *cobra.Command {
	var (
		server, token      string
		dryRun, allowRisky bool
	)
	cmd := &cobra.Command{
		Use:   "push --server URL [--dry-run] [--allow-risky] FILE...",
		Short: "Push OpenAPI files to the control plane; print the security diff; exit 1 if refused, 3 if it widens access without --allow-risky",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if token == "" {
				token = os.Getenv("SPECGATE_ADMIN_TOKEN")
			}
			failed, risky := false, false
			for _, file := range files {
				err := pushOne(cmd.OutOrStdout(), cmd.ErrOrStderr(), server, token, file, dryRun, allowRisky)
				if errors.Is(err, errRisky) {
					risky = true
				} else if err != nil {
					failed = true
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", file, err)
				}
			}
			switch {
			case failed:
				return exitCode(1)
			case risky:
				return exitCode(3)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&allowRisky, "allow-risky", false, "apply (or, with --dry-run, pass) changes that widen access: the ! lines of the security diff")
	f.StringVar(&server, "server", "http://127.0.0.1:18001", "control plane push API")
	f.StringVar(&token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
	f.BoolVar(&dryRun, "dry-run", false, "only print what the push would change")
	return cmd
}

// errRisky is a change that widens access, not taken (or, in a dry run, not passed) without
// --allow-risky.
var errRisky = errors.New("the change widens access (the ! lines); review it, then push with --allow-risky")

// pushOne checks a file locally (to learn its service name and fail fast), then pushes it.
func pushOne(stdout, stderr io.Writer, server, token, file string, dryRun, allowRisky bool) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	gw, diags := compiler.CompileFiles(filepath.Dir(file), map[string][]byte{filepath.Base(file): b}, compiler.Options{})
	if diags.HasErrors() {
		for _, d := range diags {
			fmt.Fprintln(stderr, d)
		}
		return fmt.Errorf("refused locally")
	}
	service := gw.Services[0].Name
	u := strings.TrimRight(server, "/") + "/v1/specs/" + url.PathEscape(service)
	q := url.Values{}
	if dryRun {
		q.Set("dryRun", "true")
	}
	if !allowRisky {
		q.Set("allowRisky", "false") // the control plane refuses a risky change in the same step
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		var res xds.PushResult
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("bad answer: %v", err)
		}
		verb := "accepted"
		if !res.Applied {
			verb = "dry run, would give"
		}
		fmt.Fprintf(stdout, "%s: service %s: %s version %s, %d change(s)\n", file, service, verb, res.Version, len(res.Changes))
		for _, c := range res.Changes {
			fmt.Fprintln(stdout, c)
		}
		for _, d := range res.Diagnostics {
			fmt.Fprintln(stderr, d)
		}
		if !allowRisky && slices.ContainsFunc(res.Changes, func(c compiler.Change) bool { return c.Risk }) {
			return errRisky
		}
		return nil
	case http.StatusUnprocessableEntity:
		var ref xds.RefusedError
		if err := json.Unmarshal(body, &ref); err != nil {
			return fmt.Errorf("refused: %s", body)
		}
		for _, d := range ref.Diagnostics {
			fmt.Fprintln(stderr, d)
		}
		if len(ref.Changes) > 0 {
			fmt.Fprintf(stdout, "%s: service %s: not applied, %d change(s)\n", file, service, len(ref.Changes))
			for _, c := range ref.Changes {
				fmt.Fprintln(stdout, c)
			}
			return errRisky
		}
		return fmt.Errorf("refused: %s", ref.Reason)
	case http.StatusUnauthorized:
		if token == "" {
			return fmt.Errorf("%s: no admin token was sent; set SPECGATE_ADMIN_TOKEN or --token", resp.Status)
		}
		return fmt.Errorf("%s: the admin token was refused; check SPECGATE_ADMIN_TOKEN against the server's", resp.Status)
	default:
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
}
