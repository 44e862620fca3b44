package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
)

// Freshness is how far the read models are behind the log, as this write
// side sees it: the metric events this process appended that the slowest
// counted projector has not folded yet, and when the edge accepted them.
// The edge holds metric batches while the oldest of those was accepted more
// than MaxLag ago (Proposer.appendBulk): the bulk lane's bound counts the
// batches waiting for the decider, not the events waiting for the
// projector, which folds slower than the decider decides, so without this
// the log grew a backlog and a point took seconds to become visible.
//
// Projectors announce their applied sequence (bus.AnnouncePositions; the
// all-in-one's in-process projector too). A projector is counted while it
// serves (not catching up at start, not stalled at an unreadable event),
// was heard from within Silence, and, if it is behind, advanced within
// Silence: a dead, absent or stuck projector holds writers for at most
// Silence, never for good. With no projector counted nothing is held.
type Freshness struct {
	// MaxLag is how old the oldest unfolded event may be before writers
	// are held.
	MaxLag time.Duration
	// Silence is how long a projector may go unheard, or stay behind
	// without advancing, and still be counted.
	Silence time.Duration

	mu         sync.Mutex
	projectors map[string]*projectorPos
	// pending are this process's appended metric events not yet folded by
	// every counted projector, in sequence order (one decider appends
	// them in order).
	pending []appended
	// head is the last sequence appended here (pending forgets).
	head uint64
	// queued is when the bulk lane's oldest undecided batch was stored
	// (zero when the lane is empty), as last sampled (WatchBulk).
	queued time.Time
	// appendedAt is when the decider last appended a metric event.
	appendedAt time.Time
	now        func() time.Time
}

// Defaults of Freshness.
const (
	DefaultMaxLag  = 250 * time.Millisecond
	DefaultSilence = 10 * time.Second
	// stalledAfter: a decider that appended nothing for that long is not
	// lagging but stalled (a full disk, a dead decider elsewhere): the bulk
	// lane's age is not held against writers then, so they meet the
	// lane's own answer (507 storage_full, 429 inbox_full) at once.
	stalledAfter = time.Second
	// maxPending bounds the events remembered (about 1 MiB); past it the
	// oldest are forgotten, which under-reports the lag of a projector
	// that is that far behind by then.
	maxPending = 1 << 16
)

type projectorPos struct {
	seq     uint64
	serving bool
	heard   time.Time
	// advanced is when it last advanced, or was last seen with nothing
	// appended here left to fold.
	advanced time.Time
}

type appended struct {
	seq uint64
	at  time.Time
}

// NewFreshness returns a tracker with the default MaxLag and Silence.
func NewFreshness() *Freshness {
	return &Freshness{MaxLag: DefaultMaxLag, Silence: DefaultSilence, projectors: map[string]*projectorPos{}, now: time.Now}
}

// Appended records a metric event this process appended at seq, whose
// proposal the edge accepted at at.
func (f *Freshness) Appended(seq uint64, at time.Time) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caughtUp(f.now())
	if len(f.pending) == maxPending { // forget the oldest quarter
		f.pending = append(f.pending[:0], f.pending[maxPending/4:]...)
	}
	f.pending = append(f.pending, appended{seq: seq, at: at})
	f.head = max(f.head, seq)
	f.appendedAt = f.now()
}

// Position records a projector's announcement: it has folded the log up to
// seq; serving is false while it catches up at start or is stalled.
func (f *Freshness) Position(id string, seq uint64, serving bool) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	p := f.projectors[id]
	if p == nil {
		p = &projectorPos{advanced: now}
		f.projectors[id] = p
	}
	if seq > p.seq {
		p.advanced = now
	}
	p.seq, p.serving, p.heard = seq, serving, now
}

// Queued records when the bulk lane's oldest undecided batch was stored;
// zero when the lane is empty.
func (f *Freshness) Queued(oldest time.Time) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = oldest
}

// FreshnessStatus is what Freshness knows now.
type FreshnessStatus struct {
	// Behind is the age of the oldest metric batch accepted and not yet
	// visible as far as this edge knows: the oldest event appended here
	// that a counted projector has not folded, or the oldest batch still
	// waiting in the bulk lane, whichever is older (0 when none).
	Behind time.Duration
	// Events are the metric events appended here not yet folded by every
	// counted projector.
	Events int
	// Projectors are those counted; Ignored those heard from but not
	// counted (silent, stuck behind, catching up or stalled).
	Projectors, Ignored int
}

// Status forgets what every counted projector has folded and reports the
// rest.
func (f *Freshness) Status() FreshnessStatus {
	var st FreshnessStatus
	if f == nil {
		return st
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if !f.queued.IsZero() && now.Sub(f.appendedAt) < stalledAfter {
		// A batch in the lane is older still than what it will be
		// decided into: the decider, too, can fall behind.
		st.Behind = max(0, now.Sub(f.queued))
	}
	folded, counted := f.folded(now, &st)
	if !counted {
		f.pending = f.pending[:0] // nobody to wait for
		return st
	}
	i := 0
	for i < len(f.pending) && f.pending[i].seq <= folded {
		i++
	}
	f.pending = f.pending[i:]
	st.Events = len(f.pending)
	if len(f.pending) > 0 {
		st.Behind = max(st.Behind, now.Sub(f.pending[0].at))
	}
	return st
}

// caughtUp notes, for the stuck rule, that the projectors which have
// folded everything appended here so far were not behind at now: one is
// stuck only once it has been behind for Silence without advancing.
func (f *Freshness) caughtUp(now time.Time) {
	for _, p := range f.projectors {
		if p.seq >= f.head {
			p.advanced = now
		}
	}
}

// folded is the least sequence the counted projectors have folded, and
// whether any is counted; it counts them in st. Projectors silent for
// longer than a minute are forgotten.
func (f *Freshness) folded(now time.Time, st *FreshnessStatus) (uint64, bool) {
	f.caughtUp(now)
	var least uint64
	counted := false
	for id, p := range f.projectors {
		silent := now.Sub(p.heard)
		if silent > time.Minute+f.Silence {
			delete(f.projectors, id)
			continue
		}
		stuck := p.seq < f.head && now.Sub(p.advanced) > f.Silence
		if !p.serving || silent > f.Silence || stuck {
			st.Ignored++
			continue
		}
		st.Projectors++
		if !counted || p.seq < least {
			least = p.seq
		}
		counted = true
	}
	return least, counted
}

// Holding reports whether metric batches are held now: the oldest event
// appended here that a counted projector has not folded was accepted more
// than MaxLag ago.
func (f *Freshness) Holding() bool {
	return f != nil && f.Status().Behind > f.MaxLag
}

// bulkSampling is how often WatchBulk samples the bulk lane.
const bulkSampling = 50 * time.Millisecond

// WatchBulk samples the bulk lane's oldest undecided batch into f until
// ctx ends: the events the decider has yet to decide are part of the lag
// (a burst admitted while the decider lagged reached the projector all at
// once). A failed sample keeps the last one.
func (f *Freshness) WatchBulk(ctx context.Context, js jetstream.JetStream) {
	t := time.NewTicker(bulkSampling)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if oldest, err := bus.OldestStored(ctx, js, bus.BulkStream); err == nil {
				f.Queued(oldest)
			}
		}
	}
}
