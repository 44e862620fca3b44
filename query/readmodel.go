package query

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

// EventLog is where a read model's events come from: the events stream,
// passed in by the wiring (package bus implements it over JetStream).
type EventLog struct {
	// Source reads the log from a sequence; with follow it keeps reading
	// new events until ctx ends.
	Source func(follow bool) projections.Source
	// Filtered reads the parts of the log that match subject filters, to
	// its end (time travel).
	Filtered projections.LogReader
	// LastSeq is the log's last sequence now.
	LastSeq func(ctx context.Context) (uint64, error)
}

// ReadModel folds the log into a read model, answers reads from it, and can
// rebuild it from the log while serving: the new read model is built next
// to the live one and replaces it once it has caught up, without a pause in
// reads.
type ReadModel struct {
	// Reader answers reads from whichever read model is live; it also
	// streams exports (Exporter).
	Reader Reader
	// ID names this projector replica in admin answers.
	ID string

	events   EventLog
	subjects events.Subjects
	opts     projections.Options // Dir is the base directory
	log      *slog.Logger

	cur       atomic.Pointer[generation]
	rebuildMu sync.Mutex // one rebuild at a time
	digestMu  sync.Mutex // one digest at a time

	runMu  sync.Mutex
	runCtx context.Context // set while Run runs
	failed chan error      // a live generation's follow failed

	progress progressTracker
	caughtUp chan struct{}
	// stalled is the unreadable event the live read model waits at, until
	// a site admin quarantines it (nil while it follows the log).
	stalled      atomic.Pointer[events.UnreadableError]
	caughtUpOnce sync.Once
	// ProgressEvery is how often a catch-up or a rebuild logs its
	// progress (10 s if zero).
	ProgressEvery time.Duration
}

// generation is one read model and the follow that feeds it.
type generation struct {
	dir   string
	store *projections.Store
	svc   *Service

	mu     sync.RWMutex // reads hold it shared; retiring takes it
	closed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// OpenReadModel opens the read model in o.Dir, first repairing what a crash
// during a rebuild may have left next to it. subj are the log's subjects
// (time travel filters by them).
func OpenReadModel(el EventLog, subj events.Subjects, o projections.Options, log *slog.Logger) (*ReadModel, error) {
	if !o.InMemory {
		if err := os.MkdirAll(filepath.Dir(o.Dir), 0o750); err != nil {
			return nil, err
		}
		if err := projections.PrepareDir(o.Dir); err != nil {
			return nil, err
		}
	}
	if o.Quarantined == nil && el.Filtered != nil {
		o.Quarantined = projections.Quarantined(el.Filtered, subj)
	}
	st, err := projections.Open(o)
	if err != nil {
		return nil, err
	}
	p := &ReadModel{ID: newID(), events: el, subjects: subj, opts: o, log: log, failed: make(chan error, 2), caughtUp: make(chan struct{})}
	p.cur.Store(p.newGeneration(o.Dir, st))
	p.Reader = liveReader{p}
	return p, nil
}

func (p *ReadModel) newGeneration(dir string, st *projections.Store) *generation {
	return &generation{dir: dir, store: st, done: make(chan struct{}),
		svc: &Service{Store: st, Log: p.events.Filtered, Subjects: p.subjects}}
}

// Store returns the live read model (it changes when a rebuild completes).
func (p *ReadModel) Store() *projections.Store { return p.cur.Load().store }

// Close closes the read model of a projector that never ran.
func (p *ReadModel) Close() error { return p.shut(p.cur.Load()) }

// shut closes g once the reads in flight on it are done; later reads of it
// answer errs.Unavailable (retryable), never a closed database.
func (p *ReadModel) shut(g *generation) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.store.Close()
}

// errStopped answers a read that arrives while the projector shuts down.
var errStopped = errs.New(errs.Unavailable, "unavailable", "the read model is shutting down; retry in a moment")

// liveReader reads from the live generation, waiting for a read that
// started on a generation being retired to finish first.
type liveReader struct{ p *ReadModel }

func (r liveReader) Read(ctx context.Context, req Request) (out json.RawMessage, err error) {
	if verr := r.p.view(func(g *generation) { out, err = g.svc.Read(ctx, req) }); verr != nil {
		return nil, verr
	}
	return out, err
}

// Export implements Exporter: the export streams from the live read model.
func (r liveReader) Export(ctx context.Context, req Request, w io.Writer, started func()) (err error) {
	if verr := r.p.view(func(g *generation) { err = g.svc.Export(ctx, req, w, started) }); verr != nil {
		return verr
	}
	return err
}

// view runs fn on the live generation, which stays open until fn returns.
// Once the live generation is closed for good (the projector stops), it
// returns errStopped instead.
func (p *ReadModel) view(fn func(*generation)) error {
	for {
		g := p.cur.Load()
		g.mu.RLock()
		if g.closed {
			g.mu.RUnlock()
			if p.cur.Load() == g {
				return errStopped // closed and not replaced: shutting down
			}
			continue // switched meanwhile: use the new one
		}
		fn(g)
		g.mu.RUnlock()
		return nil
	}
}

// follow starts feeding g from the log until it is retired or ctx ends.
func (p *ReadModel) follow(ctx context.Context, g *generation) {
	gctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	go func() {
		defer close(g.done)
		wait := time.Second
		for {
			err := g.store.Follow(gctx, p.events.Source(true))
			if u, ok := events.Unreadable(err); ok && gctx.Err() == nil && p.awaitQuarantine(gctx, g, u) {
				continue // quarantined: follow again, skipping it
			}
			// A full disk: the batch was not stored; try it again (from
			// the applied sequence) once space may be back.
			if noSpace(err) && gctx.Err() == nil {
				p.log.Error("the read model's disk is full; retrying", "dir", g.dir, "in", wait, "err", err)
				select {
				case <-gctx.Done():
				case <-time.After(wait):
				}
				wait = min(2*wait, 5*time.Second)
				continue
			}
			if gctx.Err() == nil {
				p.failed <- fmt.Errorf("projector (%s): %w", g.dir, err)
			}
			return
		}
	}()
}

// Run follows the log until ctx ends or following it fails.
func (p *ReadModel) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.runMu.Lock()
	p.runCtx = ctx
	p.runMu.Unlock()
	p.follow(ctx, p.cur.Load())
	go p.watchCatchUp(ctx, cmp.Or(p.ProgressEvery, 10*time.Second))
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
	_ = p.shut(g)
	return err
}

// RebuildProgress is how far a rebuild got.
type RebuildProgress struct {
	ID      string `json:"id"`
	Dir     string `json:"dir"`
	Seq     uint64 `json:"seq"`
	Total   uint64 `json:"total"` // last sequence of the log when the rebuild started
	Applied int64  `json:"applied"`
	// Rate is events/s over the last seconds; ETA the seconds left at it.
	Rate float64 `json:"rate,omitempty"`
	ETA  float64 `json:"eta_s,omitempty"`
	// CatchUp marks the catch-up of the live read model at start.
	CatchUp bool   `json:"catch_up,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Error   string `json:"error,omitempty"`
	// Digest is the new read model's digest once it is live.
	Digest *projections.DigestInfo `json:"digest,omitempty"`
}

// Rebuild replays the log into a fresh read model next to the live one,
// reporting progress, and switches reads to it once it has caught up with
// the live one; the old one is then removed. It needs Run to be running.
func (p *ReadModel) Rebuild(ctx context.Context, progress func(RebuildProgress)) (projections.DigestInfo, error) {
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
	err = p.replay(ctx, st, &pr, progress)
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
	p.retire(old)
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

// replay replays the whole log into st, reporting progress (events/s over
// a window and an ETA) to progress, the log and the status.
func (p *ReadModel) replay(ctx context.Context, st *projections.Store, pr *RebuildProgress, progress func(RebuildProgress)) error {
	if last, err := p.events.LastSeq(ctx); err == nil {
		pr.Total = last
	}
	p.log.Info("rebuilding the read model", "into", pr.Dir, "events", pr.Total)
	w := rateWindow{span: 10 * time.Second}
	w.add(time.Now(), 0)
	lastLog := time.Now()
	every := cmp.Or(p.ProgressEvery, 10*time.Second)
	defer p.progress.set(nil)
	_, err := st.ReplayTo(ctx, p.events.Source(false), 0, func(seq uint64, applied int64) {
		now := time.Now()
		pr.Seq, pr.Applied = seq, applied
		pr.Rate = w.add(now, uint64(applied))
		pr.ETA = eta(pr.Total-min(seq, pr.Total), pr.Rate).Seconds()
		p.progress.set(pr)
		if now.Sub(lastLog) >= every {
			lastLog = now
			p.log.Info("rebuilding: "+pr.String(), "seq", seq, "total", pr.Total, "events_per_s", int64(pr.Rate))
		}
		if progress != nil {
			progress(*pr)
		}
	})
	return err
}

// retire closes and removes a replaced read model, once the reads in
// flight on it have finished.
func (p *ReadModel) retire(old *generation) {
	old.mu.Lock()
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
}

// Digest returns the digest of the live read model.
func (p *ReadModel) Digest() (d projections.DigestInfo, err error) {
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
func (p *ReadModel) Verify(ctx context.Context) (Verification, error) {
	var v Verification
	var err error
	if v.Live, err = p.Digest(); err != nil {
		return v, err
	}
	o := projections.Options{InMemory: true, Quarantined: p.opts.Quarantined}
	if !p.opts.InMemory {
		dir, err := os.MkdirTemp(filepath.Dir(p.opts.Dir), "verify-")
		if err != nil {
			return v, err
		}
		defer os.RemoveAll(dir)
		o = projections.Options{Dir: dir, Quarantined: p.opts.Quarantined}
	}
	st, err := projections.Open(o)
	if err != nil {
		return v, err
	}
	defer st.Close()
	if v.Live.Seq > 0 {
		if _, err := st.ReplayTo(ctx, p.events.Source(false), v.Live.Seq, nil); err != nil {
			return v, fmt.Errorf("verify: %w", err)
		}
	}
	if v.Replay, err = st.Digest(); err != nil {
		return v, err
	}
	v.Equal = v.Live == v.Replay
	return v, nil
}

// newID names a read-model replica: 8 random lower-case hex characters.
func newID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// noSpace reports whether err is the disk's "no space left on device".
func noSpace(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left"))
}
