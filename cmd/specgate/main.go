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

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/specgate/specgate/internal/buildinfo"
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
		Version:       buildinfo.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if err := logLevel.UnmarshalText([]byte(levelFlag)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", levelFlag)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&levelFlag, "log-level", "info", "log level of the roles: debug, info, warn or error")
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
		newRollbackCmd(),
		newHistoryCmd(),
		newRateLimitCmd(),
		newValidateCmd(),
		newAuthzCmd(),
		newTokenCmd(),
		newRevokeCmd(),
		newKeysCmd(),
		newImportCmd(),
		newStatsCmd(),
		newSpecsCmd(),
		newVersionCmd(),
	}
}

// exitCode is returned by a command that already printed its diagnostics and only needs the
// process to exit with a status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

var (
	levelFlag string
	logLevel  slog.LevelVar
)

// logger is the structured logger every role uses: JSON to stderr, at --log-level.
// go-redis's own messages (a failed dial, each time) go to it at debug: the roles log a
// store's failures and recoveries themselves, once each.
func logger() *slog.Logger {
	l := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: &logLevel}))
	redis.SetLogger(redisLog{l})
	return l
}

type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	if r.l.Enabled(ctx, slog.LevelDebug) {
		r.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build: module version, VCS revision, Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "specgate", buildinfo.Get())
			return err
		},
	}
}
