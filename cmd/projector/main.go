// Command projector folds Logbook's event log into a Badger read model and
// answers read requests over NATS (a queue group: run several replicas, each
// with its own directory).
//
//	projector [-nats.url URL] [-data.dir DIR] [-durable]     run
//	projector status [-nats.url URL]                         the running projectors: id, directory, sequence
//	projector digest [-nats.url URL] [-id ID] [-verify]      digests of the running projectors' read models
//	projector digest -dir DIR                                digest of a read model no process has open
//	projector rebuild [-nats.url URL] [-id ID]               rebuild the running projectors' read models from the log
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/oklog/run"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/metrics"
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
	if len(args) > 0 && (args[0] == "digest" || args[0] == "rebuild" || args[0] == "status") {
		return admin(ctx, args[0], args[1:], stdout, stderr)
	}
	fs := cli.ServerFlagSet("projector", stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	dataDir := fs.String("data.dir", "./logbook-readmodel", "directory of this replica's Badger read model")
	replicas := fs.Int("nats.replicas", 1, "stream replicas (3 in a JetStream cluster)")
	durable := fs.Bool("durable", false, "fsync every read-model batch")
	natsAuth := app.NATSAuthFlags(fs, false)
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	httpAddr := fs.String("http.addr", "", "HTTP address of /metrics, /healthz and /readyz, e.g. 127.0.0.1:8083 (empty: none; each replica needs its own)")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := bus.DefaultConfig()
	cfg.Replicas = *replicas
	b, err := bus.Dial(ctx, *natsURL, "logbook-projector", cfg, log, natsAuth.Options()...)
	if err != nil {
		return err
	}
	defer b.Close()
	p, err := app.NewProjector(b, projections.Options{Dir: *dataDir, SyncWrites: *durable})
	if err != nil {
		return err
	}
	log.Info("projector running", "data", *dataDir, "seq", p.ReadModel.Store().Seq(), "id", p.ReadModel.ID, "nats", *natsURL)
	if *httpAddr == "" {
		return p.Run(ctx, true)
	}
	ln, err := app.Listen(*httpAddr, "-http.addr")
	if err != nil {
		p.ReadModel.Close()
		return err
	}
	m := metrics.New("projector")
	m.SetProbes(metrics.Probes{Streams: app.StreamsProbe(b.JS), Projector: app.ProjectorProbe(b.JS, p.ReadModel)})
	log.Info("projector metrics", "http", "http://"+ln.Addr().String()+"/metrics")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error { return p.Run(ctx, true) }, func(error) { cancel() })
	g.Add(func() error { return app.ServeHTTP(ctx, ln, log, false, app.OpsRoutes(m, p.Ready, app.NATSReady(b))) }, func(error) { cancel() })
	return g.Run()
}
