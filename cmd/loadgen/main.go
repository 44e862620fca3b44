// Command loadgen measures Logbook end to end on the machine it runs on, and
// the raw limits of the same machine in the same run, so every figure comes
// with its ratio to the raw baseline.
//
//	loadgen [-mode client,filestream,rebuild] [-jobs 8] [-metrics 20] [-rate 0] [-duration 60s]
//	        [-url http://... -key <admin key> [-nats.url nats://...] [-pid <server pid>]]
//
// Without -url it starts an all-in-one Logbook in this process (embedded
// NATS, ingest, projector, query, W&B endpoints) with a temporary data
// directory: the "all-in-one process, load generator on the same box" setup;
// CPU and RSS are then those of this process (server and generator).
//
// It first measures the baseline (raw JetStream on an embedded nats-server of
// its own: async publish of the same payload sizes, synchronous publish
// latency, consume), then starts the server, creates a user and a project as
// the site admin, and runs the modes:
//
//   - client: N jobs log rows of M metrics through the Go client (package
//     client) at -rate rows/s each (0: as fast as they can). Reports points/s
//     and events/s logged and visible through the query API, freshness (time
//     from Log to visible through the query API) p50/p99, run-start latency
//     p50/p99 idle and under load, CPU and RSS, and checks that every point
//     sent is read back.
//   - filestream: the same jobs post W&B file_stream requests of history
//     lines; reports MB/s of history lines and checks the rows read back.
//   - rebuild: replays the events stream into an empty read model; reports
//     points/s against a raw read of the same stream.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/logbook/logbook/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// Interrupted: give the run a few seconds to stop cleanly (clients
		// retry a vanished server forever), then leave.
		<-ctx.Done()
		time.Sleep(5 * time.Second)
		fmt.Fprintln(os.Stderr, "loadgen: interrupted")
		os.Exit(1)
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		var ue cli.UsageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	servePprof(c.pprof, stderr)
	rep := &report{out: stdout, cfg: c}
	rep.header()
	if c.baseline {
		b, err := measureBaseline(ctx, c)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		rep.base = b
		rep.printBaseline()
	}
	var prof func()
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		prof = func() {
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(stderr, "cpuprofile:", err)
			}
		}
		defer pprof.StopCPUProfile()
	}
	return withServer(ctx, c, stderr, func(ctx context.Context, s *server) error {
		if prof != nil {
			prof()
		}
		return measure(ctx, c, s, rep)
	})
}
