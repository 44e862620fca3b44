package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/logbook/logbook/internal/cli"
)

type config struct {
	modes         map[string]bool
	url, key      string
	natsURL       string
	pid           int
	dataDir       string
	jobs, metrics int
	rate          float64
	batch         int
	ahead         int
	flush         time.Duration
	duration      time.Duration
	maxPoints     int64
	starts        int
	baseline      bool
	baseDuration  time.Duration
	cpuprofile    string
	memprofile    string
	verbose       bool
	s2            bool
	pprof         string
	log           string
}

// logger is the in-process Logbook's log (-log level), or nil.
func (c config) logger(w io.Writer) *slog.Logger {
	var l slog.Level
	if c.log == "" || l.UnmarshalText([]byte(c.log)) != nil {
		return nil
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// parseConfig reads and checks the flags.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := cli.ServerFlagSet("loadgen", stderr)
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
	fs.IntVar(&c.ahead, "ahead", 4, "without -rate: batches a job keeps buffered in its client before it waits (the client's share of freshness)")
	fs.DurationVar(&c.flush, "flush", 100*time.Millisecond, "client flush interval")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long each load mode logs")
	fs.Int64Var(&c.maxPoints, "points", 0, "stop logging after this many points (0: no limit; without -duration, no time limit)")
	fs.IntVar(&c.starts, "starts", 300, "run starts measured for the run-start latency")
	fs.BoolVar(&c.baseline, "baseline", true, "measure the raw JetStream baseline first")
	fs.DurationVar(&c.baseDuration, "baseline.duration", 5*time.Second, "how long the baseline publishes")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the load phase to this file")
	fs.StringVar(&c.memprofile, "memprofile", "", "write a heap profile to this file after the load modes")
	fs.BoolVar(&c.verbose, "v", false, "print progress every second")
	fs.StringVar(&c.log, "log", "", "in-process Logbook: log at this level (debug, info, warn) to stderr")
	fs.StringVar(&c.pprof, "pprof", "", "serve net/http/pprof on this address during the run (heap profiles mid-run)")
	fs.BoolVar(&c.s2, "s2", false, "in-process Logbook: store the events stream S2-compressed")
	if err := cli.Parse(fs, args, "LOADGEN_"); err != nil {
		return c, err
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if c.maxPoints > 0 && !durationSet {
		// -points alone: log until that many points are sent.
		c.duration = 1000 * time.Hour
	}
	c.modes = map[string]bool{}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "client", "filestream", "rebuild":
			c.modes[m] = true
		case "":
		default:
			return c, cli.UsageError{Msg: fmt.Sprintf("unknown -mode %q (client, filestream, rebuild)", m)}
		}
	}
	if c.jobs < 1 || c.metrics < 1 || c.batch < 1 {
		return c, cli.UsageError{Msg: "-jobs, -metrics and -batch must be at least 1"}
	}
	if c.url != "" && c.key == "" {
		return c, cli.UsageError{Msg: "-url needs -key (or LOGBOOK_ADMIN_API_KEY): the site admin's API key"}
	}
	return c, nil
}
