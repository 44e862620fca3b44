// Command ingest runs Logbook's write side against an external NATS server:
// the policy decider and the HTTP write API (native API and W&B endpoints).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/oklog/run"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
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
	fs := cli.NewFlagSet("ingest", stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	httpAddr := fs.String("http.addr", "127.0.0.1:8081", "HTTP address of the write API and the W&B endpoints")
	replicas := fs.Int("nats.replicas", 1, "stream replicas (3 in a JetStream cluster)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	natsAuth := app.NATSAuthFlags(fs, true)
	keyRate := fs.Float64("http.key-rate", ingest.DefaultKeyRate, "requests per second allowed per API key, on average (429 rate_limited beyond)")
	keyBurst := fs.Int("http.key-burst", ingest.DefaultKeyBurst, "burst of requests allowed per API key")
	crashAfter := fs.Duration("runs.crash-after", policy.DefaultCrashAfter, "mark a running run crashed after this long without a heartbeat or a log")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := bus.DefaultConfig()
	cfg.Replicas = *replicas
	b, err := app.ConnectBus(ctx, *natsURL, "logbook-ingest", cfg, log, natsAuth.Options()...)
	if err != nil {
		return err
	}
	defer b.Close()
	if *crashAfter <= 0 {
		return cli.UsageError{Msg: fmt.Sprintf("-runs.crash-after must be positive, not %s", *crashAfter)}
	}
	in := app.NewIngest(b)
	in.SetCrashAfter(*crashAfter)
	in.Edge.Limits = ingest.NewKeyLimiter(*keyRate, *keyBurst)
	if key := os.Getenv("LOGBOOK_ADMIN_API_KEY"); key != "" {
		if err := ingest.ValidateAPIKey(key); err != nil {
			return fmt.Errorf("LOGBOOK_ADMIN_API_KEY: %w", err)
		}
		// Creates the site admin "admin" with this key if the log has no users.
		in.Decider.Seed = &ingest.Seed{Username: "admin", KeyHash: policy.HashKey(key)}
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen on -http.addr %s: %w", *httpAddr, err)
	}
	mux := http.NewServeMux()
	app.Health(mux)
	in.Edge.Register(mux)
	// The W&B endpoints read run state through the projectors' read service.
	wandb.Routes(mux, in, query.NATSReader{NC: b.NC, Subject: query.ReadSubject(b.Subject.Prefix)})
	log.Info("ingest listening", "http", "http://"+ln.Addr().String(), "nats", *natsURL)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error { return in.Decider.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return in.ServeCallout(ctx, natsAuth, *natsURL) }, func(error) { cancel() })
	g.Add(func() error { return in.Sweeper.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return app.Serve(ctx, ln, app.CleanPaths(mux), log) }, func(error) { cancel() })
	return g.Run()
}
