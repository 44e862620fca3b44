// Command logbook runs all of Logbook in one process (embedded NATS, ingest,
// projector, query, W&B endpoints) and administers and reads a running
// Logbook from the command line. `logbook help` lists every command;
// `logbook help <command>` (or `logbook <command> -h`) shows its arguments
// and flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/logbook/logbook/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "logbook:", err)
		var ue cli.UsageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func program() *cli.Program {
	cmds := []*cli.Command{
		{Name: "serve", Summary: "run Logbook (the default command): embedded NATS, API, W&B endpoints, web UI",
			EnvPrefix: "LOGBOOK_", MaxArgs: 0, Flags: serveFlags,
			Help: `Every flag can also be set by its environment variable (shown in brackets).
On the first start it creates the site admin "admin" and prints its API key
once (LOGBOOK_ADMIN_API_KEY chooses it; on a data directory that already has
an admin the variable is refused: use 'logbook admin reset-key').`},
		{Name: "admin reset-key", Summary: "give the site admin a new API key (Logbook stopped), printed once",
			EnvPrefix: "LOGBOOK_", MaxArgs: 0, Output: true, Flags: resetKeyFlags,
			Help: `Opens the data directory of a stopped Logbook (its embedded NATS on a free
local port), appends the key change to the log as an event by the system,
and prints the new key once. The old keys of the user stay valid unless
-revoke-others is given. Use it when the admin key is lost.`},
	}
	cmds = append(cmds, cli.ReadModelCommands()...)
	cmds = append(cmds, cli.AdminCommands()...)
	return &cli.Program{
		Name:     "logbook",
		Intro:    "Logbook: a self-hosted ML experiment tracker.\n\nusage: logbook [command] [arguments] [flags]   (no command: serve)",
		Footer:   cli.Footer,
		Default:  "serve",
		Commands: cmds,
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return program().Main(ctx, args, stdout, stderr)
}
