package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newSpecsCmd reads and removes the live specs through the control plane's API: list, get,
// rm (a change set that deletes the service, like push --delete).
func newSpecsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "specs list|get SERVICE|rm SERVICE --server URL",
		Short: "List the live specs, print one, or remove a service (as push --delete does)",
	}
	var server, token, output string
	admin := func(cmd *cobra.Command, path string) ([]byte, error) {
		return adminGet(cmd.Context(), server+path, token)
	}
	flags := func(c *cobra.Command) {
		c.Flags().StringVar(&server, "server", "http://127.0.0.1:18001", "control plane API")
		c.Flags().StringVar(&token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
	}
	list := &cobra.Command{
		Use:   "list --server URL [--output text|json]",
		Short: "The live services: file and operations, and the live version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := admin(cmd, "/v1/specs")
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := cmd.OutOrStdout().Write(append(bytes.TrimSpace(out), '\n'))
				return err
			}
			var l struct {
				Revision int64 `json:"revision"`
				Services []struct {
					Service, File string
					Operations    int
				} `json:"services"`
			}
			if err := json.Unmarshal(out, &l); err != nil {
				return fmt.Errorf("bad answer: %v", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "SERVICE\tFILE\tOPERATIONS\t(live version %d)\n", l.Revision)
			for _, s := range l.Services {
				fmt.Fprintf(tw, "%s\t%s\t%d\t\n", s.Service, s.File, s.Operations)
			}
			return tw.Flush()
		},
	}
	flags(list)
	list.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	get := &cobra.Command{
		Use:   "get SERVICE --server URL",
		Short: "Print the live spec file of a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := admin(cmd, "/v1/specs/"+url.PathEscape(args[0]))
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	flags(get)
	var c changeFlags
	rm := &cobra.Command{
		Use:   "rm SERVICE... --server URL [--dry-run] [--if-version N] [--allow-risky]",
		Short: "Remove services as one change set (push --delete); exit codes as push",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := c.changeSet()
			if err != nil {
				return err
			}
			cs.Delete = args
			return c.send(cmd, "/v1/changes", cs)
		},
	}
	c.register(rm)
	cmd.AddCommand(list, get, rm)
	return cmd
}
