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
//   - rebuild: replays the events stream into an empty read model
//     (projections.Store.Follow with app.EventSource(js, false)); reports
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
	"strings"
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

type config struct {
	modes         map[string]bool
	url, key      string
	natsURL       string
	pid           int
	dataDir       string
	jobs, metrics int
	rate          float64
	batch         int
	flush         time.Duration
	duration      time.Duration
	maxPoints     int64
	starts        int
	baseline      bool
	baseDuration  time.Duration
	cpuprofile    string
	memprofile    string
	verbose       bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("loadgen", stderr)
	var c config
	modes := fs.String("mode", "client,rebuild", "comma-separated modes: client, filestream, rebuild")
	fs.StringVar(&c.url, "url", "", "Logbook to load (default: start an all-in-one in this process)")
	fs.StringVar(&c.key, "key", os.Getenv("LOGBOOK_ADMIN_API_KEY"), "site admin API key of -url (default $LOGBOOK_ADMIN_API_KEY)")
	fs.StringVar(&c.natsURL, "nats.url", "", "NATS of -url, for the rebuild mode")
	fs.IntVar(&c.pid, "pid", 0, "process id of the -url server, for its CPU and RSS (default: this process)")
	fs.StringVar(&c.dataDir, "data.dir", "", "data directory of the in-process Logbook (default: a temporary one, removed at exit)")
	fs.IntVar(&c.jobs, "jobs", 8, "simulated training jobs (one run each)")
	fs.IntVar(&c.metrics, "metrics", 20, "metrics per row")
	fs.Float64Var(&c.rate, "rate", 0, "rows per second per job (0: as fast as possible)")
	fs.IntVar(&c.batch, "batch", 1000, "rows per client batch, history lines per file_stream request")
	fs.DurationVar(&c.flush, "flush", 100*time.Millisecond, "client flush interval")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long each load mode logs")
	fs.Int64Var(&c.maxPoints, "points", 0, "stop logging after this many points (0: no limit)")
	fs.IntVar(&c.starts, "starts", 300, "run starts measured for the run-start latency")
	fs.BoolVar(&c.baseline, "baseline", true, "measure the raw JetStream baseline first")
	fs.DurationVar(&c.baseDuration, "baseline.duration", 5*time.Second, "how long the baseline publishes")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the load phase to this file")
	fs.StringVar(&c.memprofile, "memprofile", "", "write a heap profile to this file after the load modes")
	fs.BoolVar(&c.verbose, "v", false, "print progress every second")
	if err := cli.Parse(fs, args, "LOADGEN_"); err != nil {
		return err
	}
	c.modes = map[string]bool{}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "client", "filestream", "rebuild":
			c.modes[m] = true
		case "":
		default:
			return cli.UsageError{Msg: fmt.Sprintf("unknown -mode %q (client, filestream, rebuild)", m)}
		}
	}
	if c.jobs < 1 || c.metrics < 1 || c.batch < 1 {
		return cli.UsageError{Msg: "-jobs, -metrics and -batch must be at least 1"}
	}
	if c.url != "" && c.key == "" {
		return cli.UsageError{Msg: "-url needs -key (or LOGBOOK_ADMIN_API_KEY): the site admin's API key"}
	}

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
