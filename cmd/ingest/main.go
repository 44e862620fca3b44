// Command ingest runs Logbook's write side against an external NATS server:
// the policy decider and the HTTP write API (native API and W&B endpoints).
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
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/metrics"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/wandb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMain(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		if errors.As(err, new(cli.UsageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := cli.ServerFlagSet("ingest", stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	httpAddr := fs.String("http.addr", "127.0.0.1:8081", "HTTP address of the write API and the W&B endpoints")
	replicas := fs.Int("nats.replicas", 1, "stream replicas (3 in a JetStream cluster)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	natsAuth := app.NATSAuthFlags(fs, true)
	keyRate := fs.Float64("http.key-rate", lbhttp.DefaultKeyRate, "requests per second allowed per API key, on average (429 rate_limited beyond)")
	keyBurst := fs.Int("http.key-burst", lbhttp.DefaultKeyBurst, "burst of requests allowed per API key")
	crashAfter := fs.Duration("runs.crash-after", policy.DefaultCrashAfter, "mark a running run crashed after this long without a heartbeat or a log")
	uploadQuota := fs.Int64("uploads.project-quota", wandb.DefaultProjectQuota, "bytes of W&B run files a project may store (413 upload_quota_exceeded beyond)")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	if *uploadQuota <= 0 || *crashAfter <= 0 {
		return cli.UsageError{Msg: fmt.Sprintf("-uploads.project-quota and -runs.crash-after must be positive, not %d and %s", *uploadQuota, *crashAfter)}
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := bus.DefaultConfig()
	cfg.Replicas = *replicas
	b, err := bus.Dial(ctx, *natsURL, "logbook-ingest", cfg, log, natsAuth.Options()...)
	if err != nil {
		return err
	}
	defer b.Close()
	in, err := app.NewIngest(b, app.IngestConfig{AdminKey: os.Getenv("LOGBOOK_ADMIN_API_KEY"), KeyRate: *keyRate,
		KeyBurst: *keyBurst, CrashAfter: *crashAfter, UploadQuota: *uploadQuota}, b.Reader())
	if err != nil {
		return err
	}
	ln, err := app.Listen(*httpAddr, "-http.addr")
	if err != nil {
		return err
	}
	m := metrics.New("ingest")
	in.Instrument(m)
	m.SetProbes(metrics.Probes{Streams: app.StreamsProbe(b.JS), Decider: app.DeciderProbe(b.JS)})
	ops := app.OpsRoutes(m, in.Ready, app.NATSReady(b))
	ops.Notes = append(ops.Notes, in.Lagging)
	log.Info("ingest listening", "http", "http://"+ln.Addr().String(), "nats", *natsURL)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error { return in.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return in.ServeCallout(ctx, natsAuth, *natsURL) }, func(error) { cancel() })
	g.Add(func() error { return app.ServeHTTP(ctx, ln, log, false, append(in.Routes(), ops)...) }, func(error) { cancel() })
	g.Add(func() error {
		select {
		case <-in.Service.Ready():
		case <-ctx.Done():
			return nil
		}
		if err := app.CheckAdminKey(in, os.Getenv("LOGBOOK_ADMIN_API_KEY")); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })
	return g.Run()
}
