package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// Projector folds the log into a read model, serves reads from it, and can
// rebuild it from the log while serving: the new read model is built next
// to the live one and replaces it once it has caught up, without a pause in
// reads.
type Projector struct {
	// Reader answers reads from whichever read model is live.
	Reader query.Reader
	// ID names this projector replica in admin answers.
	ID string

	bus  *Bus
	opts projections.Options // Dir is the base directory
	log  *slog.Logger

	cur       atomic.Pointer[generation]
	rebuildMu sync.Mutex // one rebuild at a time
	digestMu  sync.Mutex // one digest at a time

	runMu  sync.Mutex
	runCtx context.Context // set while Run runs
	failed chan error      // a live generation's follow failed
}

// generation is one read model and the follow that feeds it.
type generation struct {
	dir   string
	store *projections.Store
	svc   *query.Service

	mu     sync.RWMutex // reads hold it shared; retiring takes it
	closed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// OpenProjector opens the read model in o.Dir, first repairing what a crash
// during a rebuild may have left next to it.
func OpenProjector(b *Bus, o projections.Options) (*Projector, error) {
	if !o.InMemory {
		if err := os.MkdirAll(filepath.Dir(o.Dir), 0o750); err != nil {
			return nil, err
		}
		if err := projections.PrepareDir(o.Dir); err != nil {
			return nil, err
		}
	}
	st, err := projections.Open(o)
	if err != nil {
		return nil, err
	}
	p := &Projector{ID: nuid.Next()[:8], bus: b, opts: o, log: b.Log.With("component", "projector"), failed: make(chan error, 2)}
	p.cur.Store(p.newGeneration(o.Dir, st))
	p.Reader = liveReader{p}
	return p, nil
}

func (p *Projector) newGeneration(dir string, st *projections.Store) *generation {
	return &generation{dir: dir, store: st, done: make(chan struct{}),
		svc: &query.Service{Store: st, Log: LogReader(p.bus.JS), Subjects: p.bus.Subject}}
}

// Store returns the live read model (it changes when a rebuild completes).
func (p *Projector) Store() *projections.Store { return p.cur.Load().store }

// Close closes the read model of a projector that never ran.
func (p *Projector) Close() error { return p.cur.Load().store.Close() }

// liveReader reads from the live generation, waiting for a read that
// started on a generation being retired to finish first.
type liveReader struct{ p *Projector }

func (r liveReader) Read(ctx context.Context, req query.Request) (out json.RawMessage, err error) {
	r.p.view(func(g *generation) { out, err = g.svc.Read(ctx, req) })
	return out, err
}

// view runs fn on the live generation, which stays open until fn returns.
func (p *Projector) view(fn func(*generation)) {
	for {
		g := p.cur.Load()
		g.mu.RLock()
		if g.closed {
			g.mu.RUnlock()
			continue // switched meanwhile: use the new one
		}
		fn(g)
		g.mu.RUnlock()
		return
	}
}

// EventSource reads the events stream for the projections.
func EventSource(js jetstream.JetStream, follow bool) projections.Source {
	return func(ctx context.Context, from uint64, fn func([]projections.RawRecord) error) error {
		return readRecords(ctx, js, bus.ReadOptions{Stream: bus.EventsStream, From: from, Batch: 1000, Follow: follow}, fn)
	}
}

// LogReader reads the parts of the events stream that match subject
// filters, to its end (time travel).
func LogReader(js jetstream.JetStream) projections.LogReader {
	return func(ctx context.Context, filters []string, fn func([]projections.RawRecord) error) error {
		return readRecords(ctx, js, bus.ReadOptions{Stream: bus.EventsStream, Filters: filters, Batch: 1000}, fn)
	}
}

func readRecords(ctx context.Context, js jetstream.JetStream, o bus.ReadOptions, fn func([]projections.RawRecord) error) error {
	recs := make([]projections.RawRecord, 0, o.Batch)
	return bus.Read(ctx, js, o, func(batch []bus.Entry) error {
		recs = recs[:0]
		for _, e := range batch {
			recs = append(recs, projections.RawRecord{Seq: e.Seq, Data: e.Data, Time: e.Time})
		}
		return fn(recs)
	})
}

// follow starts feeding g from the log until it is retired or ctx ends.
func (p *Projector) follow(ctx context.Context, g *generation) {
	gctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	go func() {
		defer close(g.done)
		err := g.store.Follow(gctx, EventSource(p.bus.JS, true))
		if gctx.Err() == nil {
			p.failed <- fmt.Errorf("projector (%s): %w", g.dir, err)
		}
	}()
}

// Run follows the log and serves reads and admin requests over NATS (when
// serve is set) until ctx ends or following the log fails.
func (p *Projector) Run(ctx context.Context, serve bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.runMu.Lock()
	p.runCtx = ctx
	p.runMu.Unlock()
	p.follow(ctx, p.cur.Load())
	if serve {
		svc, err := query.Serve(p.bus.NC, p.bus.Subject.Prefix, p.Reader, p.bus.Log.With("component", "read"))
		if err != nil {
			return fmt.Errorf("serve reads: %w", err)
		}
		defer svc.Stop()
		stop, err := p.serveAdmin(ctx)
		if err != nil {
			return fmt.Errorf("serve admin requests: %w", err)
		}
		defer stop()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-p.failed:
	}
	cancel()
	p.rebuildMu.Lock() // a rebuild in flight ends with ctx
	defer p.rebuildMu.Unlock()
	g := p.cur.Load()
	<-g.done
	g.store.Close()
	return err
}

// RebuildProgress is how far a rebuild got.
type RebuildProgress struct {
	ID      string `json:"id"`
	Dir     string `json:"dir"`
	Seq     uint64 `json:"seq"`
	Total   uint64 `json:"total"` // last sequence of the log when the rebuild started
	Applied int64  `json:"applied"`
	Done    bool   `json:"done,omitempty"`
	Error   string `json:"error,omitempty"`
	// Digest is the new read model's digest once it is live.
	Digest *projections.DigestInfo `json:"digest,omitempty"`
}

// Rebuild replays the log into a fresh read model next to the live one,
// reporting progress, and switches reads to it once it has caught up with
// the live one; the old one is then removed. It needs Run to be running.
func (p *Projector) Rebuild(ctx context.Context, progress func(RebuildProgress)) (projections.DigestInfo, error) {
	p.rebuildMu.Lock()
	defer p.rebuildMu.Unlock()
	p.runMu.Lock()
	runCtx := p.runCtx
	p.runMu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		return projections.DigestInfo{}, errors.New("rebuild: the projector is not running")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(runCtx, cancel)
	defer stop()

	old := p.cur.Load()
	target := projections.RebuildTarget(p.opts.Dir, old.dir)
	if p.opts.InMemory {
		target = ""
	}
	o := p.opts
	st, err := projections.StartRebuild(target, o)
	if err != nil {
		return projections.DigestInfo{}, err
	}
	abandon := func(err error) (projections.DigestInfo, error) {
		st.Close()
		if rerr := projections.AbandonRebuild(target); rerr != nil {
			p.log.Warn("remove abandoned rebuild", "dir", target, "err", rerr)
		}
		return projections.DigestInfo{}, fmt.Errorf("rebuild into %s: %w", target, err)
	}
	pr := RebuildProgress{ID: p.ID, Dir: target}
	if s, err := p.bus.JS.Stream(ctx, bus.EventsStream); err == nil {
		if info, err := s.Info(ctx); err == nil {
			pr.Total = info.State.LastSeq
		}
	}
	p.log.Info("rebuilding the read model", "into", target, "events", pr.Total)
	_, err = st.ReplayTo(ctx, EventSource(p.bus.JS, false), 0, func(seq uint64, applied int64) {
		if progress != nil {
			pr.Seq, pr.Applied = seq, applied
			progress(pr)
		}
	})
	if err != nil {
		return abandon(err)
	}
	// Follow the log with the new read model until it has caught up with
	// the live one, then switch reads to it.
	g := p.newGeneration(target, st)
	p.follow(runCtx, g)
	if err := st.WaitSeq(ctx, old.store.Seq()); err != nil {
		g.cancel()
		<-g.done
		return abandon(err)
	}
	if err := projections.FinishRebuild(target); err != nil {
		g.cancel()
		<-g.done
		return abandon(err)
	}
	p.cur.Store(g)
	old.mu.Lock() // reads in flight on the old one finish first
	old.closed = true
	old.mu.Unlock()
	old.cancel()
	<-old.done
	if err := old.store.Close(); err != nil {
		p.log.Warn("close replaced read model", "dir", old.dir, "err", err)
	}
	if !p.opts.InMemory {
		if err := projections.Retire(p.opts.Dir, old.dir); err != nil {
			p.log.Warn("remove replaced read model", "dir", old.dir, "err", err)
		}
	}
	d, err := st.Digest()
	if err != nil {
		return d, err
	}
	p.log.Info("read model rebuilt and live", "dir", target, "seq", d.Seq, "digest", d.Digest)
	if progress != nil {
		pr.Seq, pr.Done, pr.Digest = d.Seq, true, &d
		progress(pr)
	}
	return d, nil
}

// Digest returns the digest of the live read model.
func (p *Projector) Digest() (d projections.DigestInfo, err error) {
	p.digestMu.Lock() // one at a time: a digest reads the whole read model
	defer p.digestMu.Unlock()
	p.view(func(g *generation) { d, err = g.store.Digest() })
	return d, err
}

// Verification compares the live read model with a replay of the log up to
// the same sequence.
type Verification struct {
	Live   projections.DigestInfo `json:"live"`
	Replay projections.DigestInfo `json:"replay"`
	Equal  bool                   `json:"equal"`
}

// Verify replays the log, up to the sequence the live read model is at,
// into a temporary directory and compares the digests.
func (p *Projector) Verify(ctx context.Context) (Verification, error) {
	var v Verification
	var err error
	if v.Live, err = p.Digest(); err != nil {
		return v, err
	}
	o := projections.Options{InMemory: true}
	if !p.opts.InMemory {
		dir, err := os.MkdirTemp(filepath.Dir(p.opts.Dir), "verify-")
		if err != nil {
			return v, err
		}
		defer os.RemoveAll(dir)
		o = projections.Options{Dir: dir}
	}
	st, err := projections.Open(o)
	if err != nil {
		return v, err
	}
	defer st.Close()
	if v.Live.Seq > 0 {
		if _, err := st.ReplayTo(ctx, EventSource(p.bus.JS, false), v.Live.Seq, nil); err != nil {
			return v, fmt.Errorf("verify: %w", err)
		}
	}
	if v.Replay, err = st.Digest(); err != nil {
		return v, err
	}
	v.Equal = v.Live == v.Replay
	return v, nil
}
