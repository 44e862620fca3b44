// Command logbook runs all of Logbook in one process (embedded NATS, ingest,
// projector, query, W&B endpoints) and administers and reads a running
// Logbook from the command line. `logbook help` lists every command;
// `logbook help <command>` (or `logbook <command> -h`) shows its arguments
// and flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/logbook/logbook/app"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/wandb"
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

func serveFlags(fs *flag.FlagSet) cli.Action {
	dataDir := fs.String("data.dir", "./logbook-data", "directory for all data (NATS streams and the read model)")
	httpAddr := fs.String("http.addr", "127.0.0.1:8080", "HTTP address of the API, the W&B endpoints, the web UI and /metrics")
	natsAddr := fs.String("nats.addr", "127.0.0.1:4222", "client address of the embedded NATS server (port 0 picks a free one)")
	durable := fs.Bool("durable", false, "fsync every JetStream write and every read-model batch (survives power loss; slower)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	crashAfter := fs.Duration("runs.crash-after", policy.DefaultCrashAfter, "mark a running run crashed after this long without a heartbeat or a log")
	keyRate := fs.Float64("http.key-rate", lbhttp.DefaultKeyRate, "requests per second allowed per API key, on average (429 rate_limited beyond)")
	keyBurst := fs.Int("http.key-burst", lbhttp.DefaultKeyBurst, "burst of requests allowed per API key")
	uploadQuota := fs.Int64("uploads.project-quota", wandb.DefaultProjectQuota, "bytes of W&B run files a project may store (413 upload_quota_exceeded beyond)")
	return func(ctx context.Context, e *cli.Env, _ []string) error {
		if *crashAfter <= 0 {
			return cli.UsageError{Msg: fmt.Sprintf("-runs.crash-after must be positive, not %s", *crashAfter)}
		}
		if *uploadQuota <= 0 {
			return cli.UsageError{Msg: fmt.Sprintf("-uploads.project-quota must be positive, not %d", *uploadQuota)}
		}
		log, err := cli.Logger(e.Err, *logLevel)
		if err != nil {
			return err
		}
		return app.AllInOne(ctx, app.AllInOneConfig{
			DataDir:     *dataDir,
			HTTPAddr:    *httpAddr,
			NATSAddr:    *natsAddr,
			AdminKey:    os.Getenv("LOGBOOK_ADMIN_API_KEY"),
			Durable:     *durable,
			CrashAfter:  *crashAfter,
			KeyRate:     *keyRate,
			KeyBurst:    *keyBurst,
			UploadQuota: *uploadQuota,
			Log:         log,
		}, e.Out, nil)
	}
}

func resetKeyFlags(fs *flag.FlagSet) cli.Action {
	dataDir := fs.String("data.dir", "./logbook-data", "data directory of the stopped Logbook")
	user := fs.String("user", "admin", "the site admin whose key to replace")
	name := fs.String("name", "reset", "name of the new key")
	revoke := fs.Bool("revoke-others", false, "also revoke every other key of the user")
	return func(ctx context.Context, e *cli.Env, _ []string) error {
		res, err := app.ResetAdminKey(ctx, app.ResetKeyConfig{DataDir: *dataDir, Username: *user, KeyName: *name,
			RevokeOthers: *revoke, Key: os.Getenv("LOGBOOK_ADMIN_API_KEY")})
		if err != nil {
			return err
		}
		if e.Quiet {
			_, err = fmt.Fprintln(e.Out, res.Key)
			return err
		}
		if e.Format == "json" {
			_, err = fmt.Fprintf(e.Out, "{\"username\": %q, \"key_id\": %q, \"key\": %q, \"revoked\": %d, \"seq\": %d}\n", res.Username, res.KeyID, res.Key, res.Revoked, res.Seq)
			return err
		}
		_, err = fmt.Fprintf(e.Out, "New API key of %q (id %s, shown once, only its hash is stored; %d other key(s) revoked):\n  %s\n",
			res.Username, res.KeyID, res.Revoked, res.Key)
		return err
	}
}
