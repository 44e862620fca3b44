// Package app builds Logbook's components from their parts and wires the
// all-in-one process: it holds constructors and wiring only. The three mains
// (cmd/ingest, cmd/projector, cmd/query) and the all-in-one (cmd/logbook)
// build their parts through the same constructors here.
package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/oklog/run"

	"github.com/logbook/logbook/bus"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
	"github.com/logbook/logbook/wandb"
)

// IngestConfig configures the write side.
type IngestConfig struct {
	// AdminKey, when set, is the first site admin's API key, created if the
	// log has no users yet.
	AdminKey string
	// KeyRate and KeyBurst rate-limit each API key at the HTTP edge
	// (lbhttp.DefaultKeyRate and DefaultKeyBurst if zero).
	KeyRate  float64
	KeyBurst int
	// CrashAfter is how long a running run may stay quiet before it is
	// marked crashed (policy.DefaultCrashAfter if zero).
	CrashAfter time.Duration
	// UploadQuota bounds the bytes of W&B run files per project
	// (wandb.DefaultProjectQuota if zero).
	UploadQuota int64
}

// Ingest is the write side: the decider, the crash sweeper and the HTTP
// write paths (native API and W&B) in front of them.
type Ingest struct {
	Service *ingest.Service
	Sweeper *ingest.Sweeper
	Writes  *lbhttp.Writes
	WandB   *wandb.Server
	// Files serves the run files W&B clients uploaded (native API).
	Files *lbhttp.RunFiles
	// Artifacts serves the native artifact read API (metadata from the
	// read service r, manifests and bytes from the artifact store).
	Artifacts *lbhttp.Artifacts
	Bus       *bus.Client
}

// Routes are the HTTP parts the write side serves.
func (in *Ingest) Routes() []lbhttp.Routes {
	return []lbhttp.Routes{in.Writes, in.WandB, in.Files, in.Artifacts}
}

// NewIngest builds the write side on b; reads of the W&B adapter go to r.
func NewIngest(b *bus.Client, c IngestConfig, r query.Reader) (*Ingest, error) {
	log := b.Log.With("component", "ingest")
	d := ingest.NewDecider(b.NC, b.JS, b.Subject, log)
	svc := &ingest.Service{Decider: d, Proposer: ingest.NewProposer(b.NC, b.JS, b.Subject)}
	// One tracker of the read models' lag: the decider records what it
	// appends, the proposer holds metric batches while they are behind.
	d.Freshness = ingest.NewFreshness()
	svc.Proposer.Freshness = d.Freshness
	crashAfter := cmp.Or(c.CrashAfter, policy.DefaultCrashAfter)
	d.SetCrashAfter(crashAfter)
	if c.AdminKey != "" {
		if err := ingest.ValidateAPIKey(c.AdminKey); err != nil {
			return nil, fmt.Errorf("LOGBOOK_ADMIN_API_KEY: %w", err)
		}
		d.Seed = &ingest.Seed{Username: "admin", KeyHash: policy.HashKey(c.AdminKey)}
	}
	files := b.Files()
	limits := lbhttp.NewKeyLimiter(cmp.Or(c.KeyRate, lbhttp.DefaultKeyRate), cmp.Or(c.KeyBurst, lbhttp.DefaultKeyBurst))
	arts := b.Artifacts()
	wb := wandb.New(ingest.Holding{Service: svc}, r, files, b.Log.With("component", "wandb")).WithArtifacts(arts)
	wb.Limits = limits // one budget per key across the native and the W&B API
	wb.ProjectQuota = c.UploadQuota
	return &Ingest{
		Service:   svc,
		Sweeper:   &ingest.Sweeper{Ingest: svc, CrashAfter: crashAfter, Log: log.With("part", "crash-sweeper")},
		Writes:    &lbhttp.Writes{Ingest: svc, Log: log, Limits: limits},
		WandB:     wb,
		Files:     &lbhttp.RunFiles{Files: &query.RunFiles{Reader: r, Store: files}, Log: log},
		Artifacts: &lbhttp.Artifacts{Artifacts: &query.Artifacts{Reader: r, Store: arts}, Log: log},
		Bus:       b,
	}, nil
}

// Run runs the decider and the crash sweeper until ctx ends or one fails,
// following the projectors' positions (the edge holds metric batches while
// the read models are behind).
func (in *Ingest) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := in.Service.Decider.Freshness
	sub, err := bus.FollowPositions(in.Bus.NC, in.Bus.Subject, func(p bus.Position) { f.Position(p.Projector, p.Seq, p.Serving) })
	if err != nil {
		return fmt.Errorf("follow the projectors' positions: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	watched := make(chan struct{})
	go func() { defer close(watched); f.WatchBulk(ctx, in.Bus.JS) }()
	defer func() { cancel(); <-watched }()
	var g run.Group
	g.Add(func() error { return in.Service.Decider.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return in.Sweeper.Run(ctx) }, func(error) { cancel() })
	return g.Run()
}

// Projector is the read side of one replica: a read model that follows the
// log, reachable over NATS.
type Projector struct {
	ReadModel *query.ReadModel
	Bus       *bus.Client
}

// NewProjector opens the read model in o.Dir on b's events stream.
func NewProjector(b *bus.Client, o projections.Options) (*Projector, error) {
	rm, err := query.OpenReadModel(b.EventLog(), b.Subject, o, b.Log.With("component", "projector"))
	if err != nil {
		return nil, err
	}
	return &Projector{ReadModel: rm, Bus: b}, nil
}

// Run follows the log, and with serve answers reads and admin requests over
// NATS, until ctx ends or following the log fails.
func (p *Projector) Run(ctx context.Context, serve bool) error {
	if serve {
		svc, err := bus.ServeReads(p.Bus.NC, p.Bus.Subject.Prefix, p.ReadModel.Reader, p.Bus.Log.With("component", "read"))
		if err != nil {
			return fmt.Errorf("serve reads: %w", err)
		}
		defer svc.Stop()
		stop, err := bus.ServeAdmin(ctx, p.Bus.NC, p.Bus.Subject.Prefix, p.ReadModel, p.Bus.Log.With("component", "projector"))
		if err != nil {
			return fmt.Errorf("serve admin requests: %w", err)
		}
		defer stop()
	}
	actx, stopAnnouncing := context.WithCancel(ctx)
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		bus.AnnouncePositions(actx, p.Bus.NC, p.Bus.Subject, p.position)
	}()
	defer func() { stopAnnouncing(); <-announced }()
	return p.ReadModel.Run(ctx)
}

// position is what the projector announces to the ingest edges: its
// applied sequence, and whether it serves (caught up at start, not stalled
// at an unreadable event).
func (p *Projector) position() bus.Position {
	serving := p.ReadModel.Stalled() == nil
	select {
	case <-p.ReadModel.CaughtUp():
	default:
		serving = false
	}
	return bus.Position{Projector: p.ReadModel.ID, Seq: p.ReadModel.Store().Seq(), Serving: serving}
}

// Listen listens on addr for the HTTP server, naming the flag that set it
// when it cannot.
func Listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", flag, addr, err)
	}
	return ln, nil
}

// ServeHTTP serves parts (and health, and the web UI when web is set) on ln
// until ctx ends.
func ServeHTTP(ctx context.Context, ln net.Listener, log *slog.Logger, web bool, parts ...lbhttp.Routes) error {
	return lbhttp.Serve(ctx, ln, lbhttp.Handler(web, parts...), log)
}
