package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/internal/atomicfile"
	"github.com/specgate/specgate/krakend"
)

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import krakend FILE -o DIR",
		Short: "Convert another gateway's configuration into a spec set",
	}
	var out string
	k := &cobra.Command{
		Use:   "krakend krakend.json -o DIR",
		Short: "Convert a KrakenD v3 configuration: DIR/specs (one OpenAPI file per backend host), DIR/gateway.yaml, and a report of what has no equivalent",
		Long: `Convert a KrakenD v3 configuration into DIR/specs/<host>.yaml (one OpenAPI description per
backend host, with x-specgate) and DIR/gateway.yaml (issuers, claims, revocation sizing). Every
endpoint feature specgate cannot express is printed, one line per endpoint and feature; an
endpoint whose authentication cannot be imported is left out, never left open. Exit 0 when the
configuration was converted (check the report), 1 when it is not a KrakenD v3 configuration.
docs/migrating-from-krakend.md has the mapping.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			res, err := krakend.Convert(b)
			if errors.Is(err, krakend.ErrNotKrakenD) {
				return fmt.Errorf("import krakend: %s: %w", args[0], err)
			}
			if err != nil {
				return err
			}
			for _, name := range slices.Sorted(maps.Keys(res.Files)) {
				p := filepath.Join(out, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := atomicfile.WriteFile(p, res.Files[name], 0o644); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %d files to %s; %d things have no equivalent:\n", len(res.Files), out, len(res.Report))
			for _, line := range res.Report {
				fmt.Fprintln(w, "- "+line)
			}
			return nil
		},
	}
	k.Flags().StringVarP(&out, "output", "o", "imported", "the directory to write")
	cmd.AddCommand(k)
	return cmd
}
