package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/xds"
)

// Exit codes of push and rollback (README, Commands): 1 refused or failed, 3 a change that
// widens access without --allow-risky, 4 the live version moved since --if-version.
const (
	exitRisky    exitCode = 3
	exitConflict exitCode = 4
)

// changeFlags are what push and rollback share.
type changeFlags struct {
	server, token, reason, author, output string
	dryRun, allowRisky                    bool
	ifVersion                             int64
}

func (c *changeFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.server, "server", "http://127.0.0.1:18001", "control plane API")
	f.StringVar(&c.token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
	f.BoolVar(&c.dryRun, "dry-run", false, "only print what the change would do, against the live version")
	f.BoolVar(&c.allowRisky, "allow-risky", false, "apply (or, with --dry-run, pass) a change that widens access: the ! lines of the security diff")
	f.Int64Var(&c.ifVersion, "if-version", -1, "apply only if the live version is still this one (the one the dry run reported); exit 4 if it moved")
	f.StringVar(&c.reason, "reason", "", "why, kept in the history")
	f.StringVar(&c.author, "author", os.Getenv("USER"), "who, kept in the history")
	f.StringVarP(&c.output, "output", "o", "text", "text, markdown (a pull-request comment) or json")
}

func (c *changeFlags) changeSet() (xds.ChangeSet, error) {
	switch c.output {
	case "text", "markdown", "json":
	default:
		return xds.ChangeSet{}, fmt.Errorf("--output %q: want text, markdown or json", c.output)
	}
	if c.token == "" {
		c.token = os.Getenv("SPECGATE_ADMIN_TOKEN")
	}
	cs := xds.ChangeSet{Reason: c.reason, Author: c.author, DryRun: c.dryRun, AllowRisky: c.allowRisky}
	if c.ifVersion >= 0 {
		cs.IfVersion = &c.ifVersion
	}
	return cs, nil
}

func newPushCmd() *cobra.Command {
	var (
		c       changeFlags
		syncDir string
		deletes []string
	)
	cmd := &cobra.Command{
		Use:   "push --server URL [--sync DIR | FILE...] [--delete SERVICE]... [--dry-run] [--if-version N] [--allow-risky]",
		Short: "Apply OpenAPI files to the control plane as one change set; print the security diff; exit 1 if refused, 3 if it widens access without --allow-risky, 4 on a version conflict",
		Long: `Apply OpenAPI files to the control plane as one change set, compiled and checked whole,
then made live all or nothing as one new version.

  push --sync DIR          DIR is the whole desired set: files not in it are removed
  push A.yaml B.yaml       each file replaces the spec of the service it declares
  push --delete SERVICE    removes a service (with files or alone)

The dry run diffs the resulting set against the live one and reports the live version; pass it
as --if-version so that what was reviewed is what gets applied.`,
		RunE: func(cmd *cobra.Command, files []string) error {
			cs, err := c.changeSet()
			if err != nil {
				return err
			}
			switch {
			case syncDir != "" && (len(files) > 0 || len(deletes) > 0):
				return errors.New("--sync DIR names the whole set: give no FILE and no --delete with it")
			case syncDir == "" && len(files) == 0 && len(deletes) == 0:
				return errors.New("nothing to push: give FILEs, --sync DIR or --delete SERVICE")
			}
			if syncDir != "" {
				cs.Sync = true
				set, err := compiler.ReadDir(syncDir)
				if err != nil {
					return err
				}
				if len(set) == 0 {
					return fmt.Errorf("%s: no spec files (.yaml, .yml, .json): a sync would remove every service", syncDir)
				}
				for _, name := range slices.Sorted(maps.Keys(set)) {
					cs.Specs = append(cs.Specs, xds.SpecFile{Name: name, Content: set[name]})
				}
			}
			for _, file := range files {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				cs.Specs = append(cs.Specs, xds.SpecFile{Name: filepath.Base(file), Content: b})
			}
			cs.Delete = deletes
			return c.send(cmd, "/v1/changes", cs)
		},
	}
	c.register(cmd)
	cmd.Flags().StringVar(&syncDir, "sync", "", "make the spec files of DIR the whole live set (adds, changes and removals)")
	cmd.Flags().StringArrayVar(&deletes, "delete", nil, "remove this service (repeatable)")
	return cmd
}

func newRollbackCmd() *cobra.Command {
	var (
		c  changeFlags
		to int64
	)
	cmd := &cobra.Command{
		Use:   "rollback --server URL [--to N] [--dry-run] [--allow-risky]",
		Short: "Make an earlier version's spec set live again, as a new version (default: the one before the live one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := c.changeSet()
			if err != nil {
				return err
			}
			return c.send(cmd, "/v1/rollback", xds.RollbackRequest{To: to, ChangeSet: cs})
		},
	}
	c.register(cmd)
	cmd.Flags().Int64Var(&to, "to", 0, "the version to return to (see specgate history)")
	return cmd
}

// send posts a change (or rollback) and prints the answer as --output says.
func (c *changeFlags) send(cmd *cobra.Command, path string, body any) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	code, out, err := adminRequest(cmd.Context(), http.MethodPost, c.server+path, c.token, body)
	if err != nil {
		return err
	}
	if c.output == "json" {
		stdout.Write(append(bytes.TrimSpace(out), '\n'))
	}
	switch code {
	case http.StatusOK:
		var res xds.PushResult
		if err := json.Unmarshal(out, &res); err != nil {
			return fmt.Errorf("bad answer: %v", err)
		}
		risky := slices.ContainsFunc(res.Changes, func(ch compiler.Change) bool { return ch.Risk })
		switch c.output {
		case "text":
			printResult(stdout, res)
		case "markdown":
			printMarkdown(stdout, res, nil)
		}
		for _, d := range res.Diagnostics {
			fmt.Fprintln(stderr, d)
		}
		if risky && !c.allowRisky && !res.Unchanged {
			fmt.Fprintln(stderr, "the change widens access (the ! lines); review it, then apply it with --allow-risky")
			return exitRisky
		}
		return nil
	case http.StatusUnprocessableEntity:
		var ref xds.RefusedError
		if err := json.Unmarshal(out, &ref); err != nil {
			return fmt.Errorf("refused: %s", out)
		}
		for _, d := range ref.Diagnostics {
			fmt.Fprintln(stderr, d)
		}
		if len(ref.Changes) > 0 {
			switch c.output {
			case "text":
				fmt.Fprintf(stdout, "not applied: %d change(s)\n", len(ref.Changes))
				for _, ch := range ref.Changes {
					fmt.Fprintln(stdout, ch)
				}
			case "markdown":
				printMarkdown(stdout, xds.PushResult{Changes: ref.Changes}, &ref)
			}
			fmt.Fprintln(stderr, ref.Reason)
			return exitRisky
		}
		fmt.Fprintln(stderr, "refused:", ref.Reason)
		return exitCode(1)
	case http.StatusConflict:
		var e struct{ Error string }
		_ = json.Unmarshal(out, &e)
		fmt.Fprintln(stderr, "conflict:", e.Error)
		return exitConflict
	default:
		return adminError(code, out, c.token)
	}
}

// LiveVersionMarker starts the hidden line of a markdown dry run that names the live version
// it was diffed against (examples/ci/specs.yml applies with it as --if-version).
const LiveVersionMarker = "specgate-live-version: "

func printResult(w io.Writer, res xds.PushResult) {
	switch {
	case res.Unchanged:
		fmt.Fprintf(w, "no change: version %d is live with this set\n", res.LiveRevision)
	case res.Applied:
		fmt.Fprintf(w, "applied: version %d is live (was %d; config %s), %d change(s)\n", res.Revision, res.LiveRevision, res.Version, len(res.Changes))
	default:
		fmt.Fprintf(w, "dry run against live version %d (apply with --if-version %d): config %s, %d change(s)\n", res.LiveRevision, res.LiveRevision, res.Version, len(res.Changes))
	}
	for _, ch := range res.Changes {
		fmt.Fprintln(w, ch)
	}
}

// printMarkdown writes the diff as a pull-request comment.
func printMarkdown(w io.Writer, res xds.PushResult, refused *xds.RefusedError) {
	risky := 0
	for _, ch := range res.Changes {
		if ch.Risk {
			risky++
		}
	}
	fmt.Fprintln(w, "### specgate: security diff")
	fmt.Fprintln(w)
	switch {
	case refused != nil:
		fmt.Fprintf(w, "**Not applied**: %s\n\n", refused.Reason)
	case res.Unchanged:
		fmt.Fprintf(w, "No change: version %d is live with this set.\n", res.LiveRevision)
		return
	case res.Applied:
		fmt.Fprintf(w, "Applied: version **%d** is live (was %d).\n\n", res.Revision, res.LiveRevision)
	default:
		fmt.Fprintf(w, "Dry run against live version **%d**. Apply with `--if-version %d`.\n", res.LiveRevision, res.LiveRevision)
		// For the pipeline's apply job, which reads it back from the pull request.
		fmt.Fprintf(w, "<!-- %s%d -->\n\n", LiveVersionMarker, res.LiveRevision)
	}
	fmt.Fprintf(w, "%d change(s), **%d widen access** (⚠️).\n\n", len(res.Changes), risky)
	if len(res.Changes) == 0 {
		return
	}
	fmt.Fprintln(w, "| | service | operation | change |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, ch := range res.Changes {
		mark := ""
		if ch.Risk {
			mark = "⚠️"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", mark, mdCell(ch.Service), mdCell(ch.Operation), mdCell(ch.Message))
	}
}

func mdCell(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "`", "'") + "`"
}

func newHistoryCmd() *cobra.Command {
	var server, token, output string
	cmd := &cobra.Command{
		Use:   "history --server URL [--output text|json]",
		Short: "List the kept versions of the spec set: when, who, why and what changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := adminGet(cmd.Context(), server+"/v1/history", token)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := cmd.OutOrStdout().Write(append(bytes.TrimSpace(out), '\n'))
				return err
			}
			var h xds.HistoryResult
			if err := json.Unmarshal(out, &h); err != nil {
				return fmt.Errorf("bad answer: %v", err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tAUTHOR\tFILES\tREASON\tSUMMARY")
			for _, r := range h.Revisions {
				live := ""
				if r.Number == h.Live {
					live = " (live)"
				}
				fmt.Fprintf(tw, "%d%s\t%s\t%s\t%d\t%s\t%s\n", r.Number, live, r.Time.Format(time.RFC3339), r.Author, len(r.Files), r.Reason, r.Summary)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "http://127.0.0.1:18001", "control plane API")
	f.StringVar(&token, "token", "", "admin token (default $SPECGATE_ADMIN_TOKEN)")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// adminRequest sends body (JSON, when not nil) to an admin API and returns the status and the
// answer.
func adminRequest(ctx context.Context, method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a 100-service set compiles in seconds
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, out, err
}

// adminGet is the answer of GET url on an admin API (adminCall, 200).
func adminGet(ctx context.Context, url, token string) ([]byte, error) {
	return adminCall(ctx, http.MethodGet, url, token, nil, http.StatusOK)
}

// adminCall is the answer of method url on an admin API, with body (JSON, when not nil) and
// token (default $SPECGATE_ADMIN_TOKEN); any status but want is an error that says why.
func adminCall(ctx context.Context, method, url, token string, body any, want int) ([]byte, error) {
	if token == "" {
		token = os.Getenv("SPECGATE_ADMIN_TOKEN")
	}
	code, out, err := adminRequest(ctx, method, url, token, body)
	if err != nil {
		return nil, err
	}
	if code != want {
		return nil, adminError(code, out, token)
	}
	return out, nil
}

// adminError explains an admin API's refusal; a 401 says what to do about it.
func adminError(code int, out []byte, token string) error {
	msg := strings.TrimSpace(string(out))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(out, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if code == http.StatusUnauthorized {
		if token == "" {
			msg += ": no admin token was sent; set SPECGATE_ADMIN_TOKEN or --token"
		} else {
			msg += ": the admin token was refused; check SPECGATE_ADMIN_TOKEN against the server's"
		}
	}
	return fmt.Errorf("%d %s: %s", code, http.StatusText(code), msg)
}
