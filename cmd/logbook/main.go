// Command logbook runs all of Logbook in one process (embedded NATS, ingest,
// projector, query, W&B endpoints) and administers a running Logbook from the
// command line.
//
//	logbook [serve] [-data.dir ./logbook-data] [-http.addr 127.0.0.1:8080] [-nats.addr 127.0.0.1:4222]
//	logbook user create <username> [-email e] [-name "Display Name"]
//	logbook key create <username> [-name laptop]
//	logbook team create <team>
//	logbook team add <team> <username> [-role admin|member]
//	logbook project create <entity>/<project>
//	logbook project invite <entity>/<project> <username or email> [-role admin|member|viewer]
//	logbook runs <entity>/<project>
//	logbook digest [-verify] | logbook digest -dir <data>/readmodel
//	logbook rebuild
//
// Admin commands talk to LOGBOOK_URL (default http://127.0.0.1:8080) with the
// key in LOGBOOK_API_KEY.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/policy"
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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "serve" || (len(args[0]) > 0 && args[0][0] == '-') {
		if len(args) > 0 && args[0] == "serve" {
			args = args[1:]
		}
		return serve(ctx, args, stdout, stderr)
	}
	if args[0] == "digest" || args[0] == "rebuild" {
		return readModel(ctx, args[0], args[1:], stdout, stderr)
	}
	return cli.Run(ctx, args, stdout)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("logbook serve", stderr)
	dataDir := fs.String("data.dir", "./logbook-data", "directory for all data (NATS streams and the read model)")
	httpAddr := fs.String("http.addr", "127.0.0.1:8080", "HTTP address of the API, the W&B endpoints and the web UI")
	natsAddr := fs.String("nats.addr", "127.0.0.1:4222", "client address of the embedded NATS server (port 0 picks a free one)")
	durable := fs.Bool("durable", false, "fsync every JetStream write and every read-model batch (survives power loss; slower)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	crashAfter := fs.Duration("runs.crash-after", policy.DefaultCrashAfter, "mark a running run crashed after this long without a heartbeat or a log")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	if *crashAfter <= 0 {
		return cli.UsageError{Msg: fmt.Sprintf("-runs.crash-after must be positive, not %s", *crashAfter)}
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	return app.AllInOne(ctx, app.AllInOneConfig{
		DataDir:    *dataDir,
		HTTPAddr:   *httpAddr,
		NATSAddr:   *natsAddr,
		AdminKey:   os.Getenv("LOGBOOK_ADMIN_API_KEY"),
		Durable:    *durable,
		CrashAfter: *crashAfter,
		Log:        log,
	}, stdout, nil)
}
