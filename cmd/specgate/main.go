// Command specgate is the one binary of the gateway: a subcommand per role (README.md, Commands).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "specgate:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "specgate",
		Short:         "An API edge gateway on Envoy, configured from OpenAPI files",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands()...)
	return root
}

// commands lists every subcommand; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newLintCmd(),
		newCompileCmd(),
		newBootstrapCmd(),
		newXDSCmd(),
		newPushCmd(),
		newRateLimitCmd(),
		newAuthzCmd(),
		newTokenCmd(),
		newRevokeCmd(),
		newStatsCmd(),
	}
}

// exitCode is returned by a command that already printed its diagnostics and only needs the
// process to exit with a status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// logger is the structured logger every role uses: JSON to stderr.
func logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
