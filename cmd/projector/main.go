// Command projector folds Logbook's event log into a Badger read model and
// answers read requests over NATS (a queue group: run several replicas, each
// with its own directory).
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
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/projections"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		if errors.As(err, new(cli.UsageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("projector", stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	dataDir := fs.String("data.dir", "./logbook-readmodel", "directory of this replica's Badger read model")
	replicas := fs.Int("nats.replicas", 1, "stream replicas (3 in a JetStream cluster)")
	durable := fs.Bool("durable", false, "fsync every read-model batch")
	natsAuth := app.NATSAuthFlags(fs, false)
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := bus.DefaultConfig()
	cfg.Replicas = *replicas
	b, err := app.ConnectBus(ctx, *natsURL, "logbook-projector", cfg, log, natsAuth.Options()...)
	if err != nil {
		return err
	}
	defer b.Close()
	p, err := app.OpenProjector(b, projections.Options{Dir: *dataDir, SyncWrites: *durable})
	if err != nil {
		return err
	}
	log.Info("projector running", "data", *dataDir, "seq", p.Store.Seq(), "nats", *natsURL)
	return p.Run(ctx, true)
}
