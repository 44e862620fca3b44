// Command query serves Logbook's HTTP read API, answered by the projectors
// over NATS request/reply.
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
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMain(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "query:", err)
		if errors.As(err, new(cli.UsageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string, stderr io.Writer) error {
	fs := cli.ServerFlagSet("query", stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	httpAddr := fs.String("http.addr", "127.0.0.1:8082", "HTTP address of the read API")
	prefix := fs.String("nats.prefix", bus.DefaultConfig().Subjects.Prefix, "subject prefix")
	natsAuth := app.NATSAuthFlags(fs, false)
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	log, err := cli.Logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	nc, _, err := bus.Connect(*natsURL, "logbook-query", append(natsAuth.Options(), bus.LogConnection(log))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	ln, err := app.Listen(*httpAddr, "-http.addr")
	if err != nil {
		return err
	}
	reads := &lbhttp.Reads{Reader: bus.NATSReader{NC: nc, Subject: bus.ReadSubject(*prefix)}, Log: log}
	m := metrics.New("query")
	ops := app.OpsRoutes(m, app.NATSReady(&bus.Client{NC: nc}))
	log.Info("query listening", "http", "http://"+ln.Addr().String(), "nats", *natsURL)
	return app.ServeHTTP(ctx, ln, log, true, reads, ops)
}
