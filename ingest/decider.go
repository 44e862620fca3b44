// Package ingest is Logbook's write side: the decider that runs the policy
// over proposed events and appends the accepted ones to the log, and the
// HTTP edge that authenticates callers and turns requests into proposals.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/par"
	"github.com/logbook/logbook/policy"
)

// Outcome is what a proposer learns about its proposal.
type Outcome struct {
	Accepted  bool              `json:"accepted"`
	Rejection *policy.Rejection `json:"rejection,omitempty"`
	Duplicate bool              `json:"duplicate,omitempty"`
	Dropped   int               `json:"dropped_rows,omitempty"`
	// Seq is the stream sequence of the last appended event: a read with
	// min_seq=Seq sees the proposal's effect.
	Seq uint64 `json:"seq,omitempty"`
	// Run, RunName and RunState describe the run the proposal concerned.
	Run      string `json:"run_id,omitempty"`
	RunName  string `json:"run_name,omitempty"`
	RunState string `json:"run_state,omitempty"`
	// LastStep is the run's last logged step (-1 before any): a resumed
	// run's client continues its step counter after it.
	LastStep *int64 `json:"last_step,omitempty"`
}

// RejectionRecord is what the rejections stream stores.
type RejectionRecord struct {
	Proposal json.RawMessage `json:"proposal,omitempty"`
	// Summary replaces Proposal when the proposal is too large or too
	// deeply nested to keep whole (see MaxRejectedProposalBytes).
	Summary *ProposalSummary `json:"proposal_summary,omitempty"`
	Actor   string           `json:"actor"`
	Code    policy.Code      `json:"code"`
	Message string           `json:"message"`
	Time    time.Time        `json:"time"`
}

// Decider consumes proposals, decides them with the policy and appends the
// accepted events. Its state is rebuilt from the events stream at start.
type Decider struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	subj events.Subjects
	log  *slog.Logger

	mu    sync.RWMutex
	state *policy.State
	// unreadable are the events of the log this decider could not decode
	// and no one has quarantined yet, by sequence (ingest/quarantine.go).
	unreadable map[uint64]aggregate

	ready chan struct{}
	bulk  chan []inbound // batches of the bulk lane, for drainBulk
	// bulkRest is what is left of the bulk batch being decided in slices
	// (decideBulk); drainBulk decides it before any later batch.
	bulkRest []inbound
	// bulkLane, lastBulk and decidedBulk serve fillBulkGap (only the
	// deciding loop uses them).
	bulkLane    jetstream.Stream
	lastBulk    uint64 // the highest bulk stream sequence received
	decidedBulk recentSeqs
	// lostOnTheWay, set by tests, drops the fetched proposals it returns
	// true for, as a fetch that expires while they are on their way does.
	lostOnTheWay func(jetstream.Msg) bool

	// Seed, when set, is the first site admin, created if the log has no
	// users yet. SeedCreated reports whether this decider created it.
	Seed        *Seed
	SeedCreated bool

	// Observe, when set, is told of every decided proposal: its type, the
	// result (accepted, rejected, duplicate), the rejection code, and the
	// metric points it appended (operators' metrics; set before Run).
	Observe func(typ, result, reason string, points int)
	// Freshness, when set, is told of every metric event appended and
	// when its proposal was accepted (set before Run).
	Freshness *Freshness
}

func (d *Decider) observe(typ events.Type, result, reason string, points int) {
	if d.Observe != nil {
		d.Observe(string(typ), result, reason, points)
	}
}

// points counts the metric values of a metrics_logged event.
func points(e events.Event) int {
	if pl, ok := e.Payload.(events.MetricsLoggedV2); ok {
		return pl.Points()
	}
	return 0
}

// Seed is the first site admin of an installation.
type Seed struct {
	Username string
	KeyHash  string
}

// NewDecider returns a decider; call Run to start it.
func NewDecider(nc *nats.Conn, js jetstream.JetStream, subj events.Subjects, log *slog.Logger) *Decider {
	return &Decider{nc: nc, js: js, subj: subj, log: log, state: policy.NewState(), ready: make(chan struct{}),
		unreadable: map[uint64]aggregate{}}
}

// Ready is closed once the state has been rebuilt from the log.
func (d *Decider) Ready() <-chan struct{} { return d.ready }

// View runs fn with read access to the current policy state.
func (d *Decider) View(fn func(*policy.State)) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	fn(d.state)
}

// load rebuilds the state from the whole events stream.
func (d *Decider) load(ctx context.Context) error {
	start := time.Now()
	n := 0
	if err := d.loadQuarantines(ctx); err != nil {
		return err
	}
	err := bus.Read(ctx, d.js, bus.ReadOptions{Stream: bus.EventsStream, Batch: 2000, Log: d.log}, func(batch []bus.Entry) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, en := range batch {
			d.applyEntry(en)
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.log.Info("policy state rebuilt from the log", "events", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// refresh applies the events of one aggregate appended by someone else since
// our state last saw it.
func (d *Decider) refresh(ctx context.Context, entity, project string) error {
	from := d.state.Seq(entity, project) + 1
	// Most refreshes find nothing new (a rejection that stands): one
	// request for the aggregate's last sequence is cheaper than a read.
	if stream, err := d.js.Stream(ctx, bus.EventsStream); err == nil {
		last, err := stream.GetLastMsgForSubject(ctx, d.subj.Aggregate(entity, project))
		if (err == nil && last.Sequence < from) || (errors.Is(err, jetstream.ErrMsgNotFound) && from == 1) {
			return nil
		}
	}
	return bus.Read(ctx, d.js, bus.ReadOptions{Stream: bus.EventsStream, Filter: d.subj.Aggregate(entity, project), From: from, Log: d.log}, func(batch []bus.Entry) error {
		for _, en := range batch {
			d.applyEntry(en)
		}
		return nil
	})
}

// Run rebuilds the state, then decides proposals until ctx ends or appending
// fails for good (the state could then differ from the log, so the decider
// stops; a restart rebuilds it and the unacknowledged proposals come again).
func (d *Decider) Run(ctx context.Context) error {
	// An append refused for lack of space waits for space (backing off)
	// rather than stopping the decider: the proposals stay in the inbox
	// and are decided once space returns.
	ctx = bus.WaitForSpace(ctx)
	if err := d.load(ctx); err != nil {
		return err
	}
	if err := d.seed(ctx); err != nil {
		return err
	}
	close(d.ready)
	tailErr := make(chan error, 1)
	go func() { tailErr <- d.tailEntities(ctx) }()
	// Transient failures (a leader election, a lost server) are retried
	// here and inside bus; what returns is an error retrying cannot fix.
	cons, bcons, err := d.consumers(ctx)
	if err != nil {
		return err
	}
	// What a crashed decider left, the bulk lane first: a batch is in the
	// bulk lane only once its run's start is decided, and a finish taken
	// over from the control lane must come after its run's batches (the
	// lanes, and drainBulk, start only after the takeover). Taking over is
	// idempotent (see takeOver): a transient failure in the middle starts
	// it again.
	for _, l := range []struct {
		stream string
		cons   jetstream.Consumer
	}{{bus.BulkStream, bcons}, {bus.InboxStream, cons}} {
		if err := bus.Retry(ctx, d.log, "take over unacknowledged proposals", 0, func(ctx context.Context) error {
			return d.takeOver(ctx, l.stream, l.cons)
		}); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while taking over
			}
			return err
		}
	}
	// Two lanes, each fetched in order by its own goroutine; the control
	// lane's batches are decided first whenever both have one, so a run
	// start waits for at most the bulk batch being decided.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	ctl := make(chan []inbound)
	d.bulk = make(chan []inbound)
	laneErr := make(chan error, 2)
	go func() { laneErr <- d.lane(lctx, bus.InboxStream, cons, ctl) }()
	go func() { laneErr <- d.lane(lctx, bus.BulkStream, bcons, d.bulk) }()
	for {
		var batch []inbound
		select {
		case batch = <-ctl:
		default:
			select {
			case batch = <-ctl:
			case batch = <-d.bulk:
				if err := d.decideBulk(ctx, batch, ctl); err != nil {
					return err
				}
				continue
			case err := <-laneErr:
				return err
			case err := <-tailErr:
				if ctx.Err() == nil {
					return fmt.Errorf("follow users and keys: %w", err)
				}
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		if err := d.decideKept(ctx, batch); err != nil {
			return err
		}
	}
}

// consumers returns the decider's consumers on the control and bulk lanes,
// creating them if missing.
func (d *Decider) consumers(ctx context.Context) (cons, bcons jetstream.Consumer, err error) {
	err = bus.Retry(ctx, d.log, "decider consumer", 10*time.Second, func(ctx context.Context) (err error) {
		get := func() error {
			if cons, err = d.js.Consumer(ctx, bus.InboxStream, bus.DeciderConsumer); err != nil {
				return err
			}
			bcons, err = d.js.Consumer(ctx, bus.BulkStream, bus.BulkConsumer)
			return err
		}
		if err = get(); errors.Is(err, jetstream.ErrConsumerNotFound) {
			if err = bus.EnsureDecider(ctx, d.js, d.log); err == nil {
				err = get()
			}
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("decider consumer: %w", err)
	}
	return cons, bcons, nil
}

// bulkSlice is how many bulk proposals are decided between two looks at
// the control lane: a control proposal waits for at most one slice (about
// 40k points of 1,000-row batches), not a whole fetch (up to 16 MiB). Two
// keep both cores of a small machine decoding.
const bulkSlice = 2

// decideBulk decides a bulk batch in slices, deciding whatever the control
// lane has in between (lanes are independent but for drainBulk's rule).
func (d *Decider) decideBulk(ctx context.Context, batch []inbound, ctl <-chan []inbound) error {
	d.bulkRest = batch
	marked := time.Now()
	for len(d.bulkRest) > 0 {
		if time.Since(marked) > inProgressEvery {
			inProgress(d.bulkRest)
			marked = time.Now()
		}
		n := min(len(d.bulkRest), bulkSlice)
		slice := d.bulkRest[:n]
		d.bulkRest = d.bulkRest[n:]
		if err := d.decideKept(ctx, slice); err != nil {
			return err
		}
		// A control proposal may drain the bulk lane (drainBulk), starting
		// with what is left of this batch (bulkRest), in order.
		select {
		case c := <-ctl:
			if err := d.decideKept(ctx, c); err != nil {
				return err
			}
		default:
		}
	}
	return nil
}

// lane hands a consumer's proposals, in order and in batches, to the
// deciding loop until ctx ends, fetching through bus.Puller (which rides
// over transient failures and recreates a deleted consumer). A batch waiting
// for the loop is kept in progress (handOver). A pull iterator
// (Consumer.Messages) was tried here: its channel also carries heartbeats
// and expiry statuses, and while the lane waited for the loop they filled
// it and nats.go dropped proposals as a slow consumer (TestKillProjector).
func (d *Decider) lane(ctx context.Context, stream string, cons jetstream.Consumer, out chan<- []inbound) error {
	pull := bus.Puller{Consumer: cons, Log: d.log, What: "fetch proposals from " + stream,
		Ensure: func(ctx context.Context) error { return bus.EnsureDecider(ctx, d.js, d.log) }}
	// Proposals per fetch: at most 500, and about 16 MiB of the largest
	// seen (see bus.FetchSizer). The bulk lane's first fetch has seen
	// nothing, and its batches may be up to 5.4 MB each (a 4 MiB body of
	// binary columns, in base64): at most 8, so that a fetch never comes
	// near the 64 MiB a connection may have pending (nats.go drops
	// messages past it); the deciding loop takes two at a time anyway.
	sizer := bus.FetchSizer{Max: 500}
	if stream == bus.BulkStream {
		sizer.Max = 8
	}
	for ctx.Err() == nil {
		msgs, err := pull.Fetch(ctx, sizer.N(), time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		batch := make([]inbound, 0, len(msgs))
		for _, m := range msgs {
			if d.lostOnTheWay != nil && d.lostOnTheWay(m) {
				continue
			}
			batch = append(batch, m)
			sizer.See(len(m.Data()))
		}
		handOver(ctx, batch, out)
	}
	return nil
}

// decideKept is decideBatch with the batch kept in progress while it is
// decided (a busy machine took longer than the ack wait).
func (d *Decider) decideKept(ctx context.Context, batch []inbound) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(inProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				inProgress(batch)
			case <-done:
				return
			}
		}
	}()
	return d.decideBatch(ctx, batch)
}

// inProgressEvery is how often proposals fetched but not yet decided are
// reported in progress: JetStream would otherwise redeliver them after the
// ack wait (30 s), behind newer ones, and a run's rows arriving out of
// order are dropped as already logged (a busy machine took that long).
const inProgressEvery = 10 * time.Second

// handOver passes a fetched batch to the deciding loop, keeping it in
// progress while it waits.
func handOver(ctx context.Context, batch []inbound, out chan<- []inbound) {
	t := time.NewTicker(inProgressEvery)
	defer t.Stop()
	for {
		select {
		case out <- batch:
			return
		case <-t.C:
			inProgress(batch)
		case <-ctx.Done():
			return
		}
	}
}

func inProgress(batch []inbound) {
	for _, m := range batch {
		if jm, ok := m.(jetstream.Msg); ok {
			_ = jm.InProgress()
		}
	}
}

// storedAt is when the inbox stored a proposal (now if it does not say).
func storedAt(m inbound) time.Time {
	switch m := m.(type) {
	case jetstream.Msg:
		if md, err := m.Metadata(); err == nil {
			return md.Timestamp
		}
	case stored:
		return m.RawStreamMsg.Time
	}
	return time.Now()
}

// drainBulk decides, before a control proposal about a run (a finish, a
// crash, a deletion, a stream's bookkeeping; or a project's deletion), the
// batches of that run (project) the bulk lane stored before the proposal
// (at): the edge accepted them first, so they are decided first, neither
// refused nor reopening the run after a finish, nor missing from what a
// later proposal sees. Later batches stay behind it. It waits for at most
// the decider's ack wait (batches another decider holds).
func (d *Decider) drainBulk(ctx context.Context, p events.Event, at time.Time) error {
	run := p.Run
	switch {
	case p.Type == events.ProjectDeleted:
		run = ""
	case run == "" || p.Type == events.RunStarted || events.ValidateRunID(run) != nil:
		return nil // no batch of its run can be waiting
	}
	stream, err := d.bulkStream(ctx)
	if err != nil {
		return err
	}
	filter := d.subj.BulkOfRun(p.Entity, p.Project, run)
	if d.bulk == nil {
		return d.drainBulkStored(ctx, stream, filter, at)
	}
	if rest := d.bulkRest; len(rest) > 0 {
		d.bulkRest = nil
		if err := d.decideKept(ctx, rest); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		// The oldest batch of the run still waiting (decided ones are
		// removed once acknowledged).
		first, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bulk lane: %w", err)
		}
		if !first.Time.Before(at) {
			return nil
		}
		select {
		case batch := <-d.bulk:
			if err := d.decideKept(ctx, batch); err != nil {
				return err
			}
		case <-time.After(10 * time.Millisecond): // acks still on their way
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// tailEntities follows the entity-level events (users, keys, teams) that
// other ingest processes append, so every edge authenticates new keys and
// stops accepting revoked ones within moments. Project events need no tail:
// appends to a project are conditional on its last sequence, and a conflict
// or a rejection refreshes the project from the log first.
func (d *Decider) tailEntities(ctx context.Context) error {
	d.mu.RLock()
	from := d.state.LastSeq() + 1
	d.mu.RUnlock()
	err := bus.Read(ctx, d.js, bus.ReadOptions{Stream: bus.EventsStream, Filter: d.subj.EntityEvents(), From: from, Follow: true, Log: d.log},
		func(batch []bus.Entry) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			for _, en := range batch {
				d.applyEntry(en)
			}
			return nil
		})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// decideBatch decides a batch of proposals in order. Metric batches are
// appended asynchronously and awaited together; any other event is appended
// synchronously with an optimistic-concurrency check on its project, after
// the metrics before it are acknowledged.
func (d *Decider) decideBatch(ctx context.Context, batch []inbound) error {
	pend := &pendingMetrics{}
	// Decoding is pure and the batch's biggest cost: decode every proposal
	// up front, on every core.
	decoded := make([]decodedProposal, len(batch))
	par.Do(len(batch), func(i int) { decoded[i].p, decoded[i].err = d.proposal(batch[i]) })
	for i := range batch {
		d.noteDecided(batch[i])
		p, err := decoded[i].p, decoded[i].err
		if err == nil {
			if r := d.precheck(ctx, p); r != nil {
				d.recordRejection(ctx, p, r)
				d.notify(p.ID, outcome(policy.Decision{Rejection: r}))
				continue
			}
		}
		switch {
		case err != nil:
			d.recordRejection(ctx, p, &policy.Rejection{Code: policy.CodeInvalid, Message: err.Error()})
		case p.Type == events.MetricsLogged:
			if err := d.fillBulkGap(ctx, batch[i], pend); err != nil {
				return err
			}
			if err := d.decideMetrics(ctx, batch[i], p, pend); err != nil {
				return err
			}
		default:
			if err := d.flush(ctx, pend); err != nil {
				return err
			}
			if err := d.drainBulk(ctx, p, storedAt(batch[i])); err != nil {
				return err
			}
			out, err := d.decideControl(ctx, p)
			if err != nil {
				return err
			}
			d.notify(p.ID, out)
		}
	}
	if err := d.flush(ctx, pend); err != nil {
		return err
	}
	for _, m := range batch {
		if err := m.Ack(); err != nil {
			d.log.Warn("ack proposal", "err", err)
		}
	}
	return nil
}

// pendingMetrics are decided metric events not appended yet.
type pendingMetrics struct {
	msgs    []bus.Msg
	events  []events.Event
	waiters []asyncNotice
	at      []time.Time // when each event's proposal was stored (Freshness)
}

// decideMetrics decides a metric batch against the state and queues its
// events for the next flush.
func (d *Decider) decideMetrics(ctx context.Context, m inbound, p events.Event, pend *pendingMetrics) error {
	d.mu.Lock()
	if redelivered(m) {
		// Another ingest process may have appended these rows before it
		// died: its appends are not in our state, and JetStream's
		// duplicate window may have passed.
		if err := d.refresh(ctx, p.Entity, p.Project); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	dec := policy.Decide(d.state, p)
	if dec.Rejection != nil {
		// Our state may be behind another ingest process: look at the log
		// before refusing.
		if err := d.refresh(ctx, p.Entity, p.Project); err != nil {
			d.mu.Unlock()
			return err
		}
		dec = policy.Decide(d.state, p)
	}
	if r := d.unreadableIn(p.Entity, p.Project); r != nil {
		dec = policy.Decision{Rejection: r} // a refresh found an unreadable event
	}
	for _, e := range dec.Events {
		d.state.Apply(0, e)
	}
	d.mu.Unlock()
	out := outcome(dec)
	if dec.Rejection != nil {
		d.recordRejection(ctx, p, dec.Rejection)
		d.notify(p.ID, out)
	}
	for _, e := range dec.Events {
		// encoded in flush; a run's batches are stored in order
		pend.msgs = append(pend.msgs, bus.Msg{Subject: d.subj.Event(e), ID: e.ID, OrderKey: e.Entity + "/" + e.Project + "/" + e.Run})
		pend.events = append(pend.events, e)
		pend.at = append(pend.at, storedAt(m))
		pend.waiters = append(pend.waiters, asyncNotice{proposal: p.ID, index: len(pend.msgs) - 1, out: out})
	}
	if len(dec.Events) == 0 && dec.Rejection == nil {
		d.observe(p.Type, "duplicate", "", 0)
		d.notify(p.ID, out)
	}
	return nil
}

// flush appends the pending metric events, encoded on every core, and
// tells their proposers.
func (d *Decider) flush(ctx context.Context, pend *pendingMetrics) error {
	if len(pend.msgs) == 0 {
		return nil
	}
	errs := make([]error, len(pend.msgs))
	par.Do(len(pend.msgs), func(i int) { pend.msgs[i].Data, errs[i] = events.Encode(pend.events[i]) })
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("encode metrics: %w", err)
	}
	seqs, err := bus.AppendAll(ctx, d.js, pend.msgs)
	if err != nil {
		return fmt.Errorf("append metrics: %w", err)
	}
	d.mu.Lock()
	for i, e := range pend.events {
		d.state.Advance(e.Entity, e.Project, seqs[i])
	}
	d.mu.Unlock()
	for i := range pend.events {
		d.Freshness.Appended(seqs[i], pend.at[i])
	}
	for _, e := range pend.events {
		d.observe(e.Type, "accepted", "", points(e))
	}
	for _, w := range pend.waiters {
		w.out.Seq = seqs[w.index]
		d.notify(w.proposal, w.out)
	}
	*pend = pendingMetrics{msgs: pend.msgs[:0], events: pend.events[:0], waiters: pend.waiters[:0], at: pend.at[:0]}
	return nil
}

type decodedProposal struct {
	p   events.Event
	err error
}

type asyncNotice struct {
	proposal string
	index    int
	out      Outcome
}

// decideControl decides a non-metric proposal and appends its events, all
// or nothing (an atomic batch when there are several), each aggregate's
// first event conditional on the aggregate's last sequence as the decision
// saw it. On a conflict the aggregates are refreshed from the log and the
// proposal decided again; if an earlier attempt (before a crash, or whose
// acknowledgement was lost) already appended them, the refresh shows it and
// the proposal is answered as a duplicate.
func (d *Decider) decideControl(ctx context.Context, p events.Event) (Outcome, error) {
	for attempt := 0; ; attempt++ {
		d.mu.Lock()
		dec := policy.Decide(d.state, p)
		if dec.Rejection != nil && attempt == 0 {
			// Our state may be behind another ingest process: look at
			// the log before refusing.
			if err := d.refresh(ctx, p.Entity, p.Project); err != nil {
				d.mu.Unlock()
				return Outcome{}, err
			}
			dec = policy.Decide(d.state, p)
		}
		msgs, err := d.messages(dec.Events)
		d.mu.Unlock()
		if err != nil {
			return Outcome{}, err
		}
		if dec.Rejection != nil {
			d.recordRejection(ctx, p, dec.Rejection)
			return outcome(dec), nil
		}
		out := outcome(dec)
		var seqs []uint64
		switch len(msgs) {
		case 0:
		case 1:
			var seq uint64
			seq, err = bus.Append(ctx, d.js, msgs[0])
			seqs = []uint64{seq}
		default:
			seqs, err = bus.AppendBatch(ctx, d.nc, msgs)
		}
		if (errors.Is(err, bus.ErrConflict) || errors.Is(err, bus.ErrAlreadyAppended)) && attempt < 20 {
			d.mu.Lock()
			r, err := d.refreshFor(ctx, dec.Events)
			d.mu.Unlock()
			if err != nil {
				return out, err
			}
			if r != nil {
				d.recordRejection(ctx, p, r)
				return outcome(policy.Decision{Rejection: r}), nil
			}
			continue
		}
		if err != nil {
			return out, fmt.Errorf("append %s: %w", p.Type, err)
		}
		d.mu.Lock()
		for i, e := range dec.Events {
			d.apply(seqs[i], e)
			out.Seq = seqs[i]
		}
		d.describeRun(p, &out)
		d.mu.Unlock()
		if len(dec.Events) == 0 {
			d.observe(p.Type, "duplicate", "", 0)
		} else {
			d.observe(p.Type, "accepted", "", 0)
		}
		return out, nil
	}
}

// messages encodes a decision's events for appending. The first event of
// each aggregate carries the expectation that the aggregate's last sequence
// is the one the decision saw (d.mu must be held, so that the state cannot
// move between the decision and its expectations).
func (d *Decider) messages(evs []events.Event) ([]bus.Msg, error) {
	msgs := make([]bus.Msg, 0, len(evs))
	seen := map[string]bool{}
	for _, e := range evs {
		data, err := events.Encode(e)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.ID, err)
		}
		m := bus.Msg{Subject: d.subj.Event(e), ID: e.ID, Data: data}
		// A quarantine is appended unconditionally: its aggregate may hold
		// the very event it skips (the state cannot know that aggregate's
		// last sequence), and two admins quarantining the same sequence at
		// once is harmless.
		if agg := policy.ProjectKey(e.Entity, e.Project); !seen[agg] && e.Type != events.EventQuarantined {
			seen[agg] = true
			m.ExpectSubject, m.ExpectSeq = d.subj.Aggregate(e.Entity, e.Project), d.state.Seq(e.Entity, e.Project)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func outcome(dec policy.Decision) Outcome {
	out := Outcome{Accepted: dec.Rejection == nil, Rejection: dec.Rejection, Duplicate: dec.Duplicate, Dropped: dec.Dropped, Run: dec.Run}
	for _, e := range dec.Events {
		if e.Run != "" {
			out.Run = e.Run
		}
	}
	return out
}

// Decided returns the outcome of a proposal this decider has already
// accepted from the same actor: a re-sent request (same Idempotency-Key)
// is answered from it, since JetStream drops the re-sent proposal as a
// duplicate and no new decision would come.
func (d *Decider) Decided(p events.Event) (Outcome, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if _, ok := d.state.Decided(p.ID); !ok {
		return Outcome{}, false
	}
	dec := policy.Decide(d.state, p)
	if !dec.Duplicate {
		return Outcome{}, false
	}
	out := outcome(dec)
	d.describeRun(p, &out)
	return out, true
}

// describeRun fills in the run's final name and state.
func (d *Decider) describeRun(p events.Event, out *Outcome) {
	if out.Run == "" {
		out.Run = p.Run
	}
	if proj, ok := d.state.Project(p.Entity, p.Project); ok && out.Run != "" {
		if r := proj.Runs[out.Run]; r != nil {
			out.RunName, out.RunState = r.Name, r.State
			last := r.LastStep
			out.LastStep = &last
		}
	}
}

// proposal decodes a proposal message. The actor, entity, project and type
// come from the subject, which the bus's permissions bind to the caller's
// credential; the body must agree with them.
func (d *Decider) proposal(m inbound) (events.Event, error) {
	user, entity, project, typ, err := d.subj.ParseProposal(m.Subject())
	if err != nil {
		return events.Event{Actor: user}, err
	}
	// Decoding would turn text that is not valid Unicode into U+FFFD: a
	// name or metric key would be stored as something never sent.
	err = events.CheckJSONText(m.Data())
	var p events.Event
	if err == nil {
		p, err = events.Decode(m.Data())
	}
	if err != nil {
		return events.Event{ID: msgID(m), Actor: user, Entity: entity, Project: project}, err
	}
	// The actor is the subject's user, also for a refused proposal (the
	// rejection names who sent it, never the body's claim).
	p.Actor = user
	if p.Entity != entity || p.Project != project || p.Type != typ {
		return p, fmt.Errorf("proposal body names %s/%s %s but its subject %s/%s %s", p.Entity, p.Project, p.Type, entity, project, typ)
	}
	if p.Time.IsZero() {
		p.Time = events.IDTime(p.ID)
	}
	return p, nil
}

// redelivered reports whether JetStream delivered m before (to a decider
// that did not acknowledge it).
func redelivered(m inbound) bool {
	jm, ok := m.(jetstream.Msg)
	if !ok {
		return true // taken over from a crashed decider
	}
	md, err := jm.Metadata()
	return err != nil || md.NumDelivered > 1
}

// inbound is a proposal message: delivered by the decider consumer, or
// read from the inbox stream when taking over what a crashed decider left
// unacknowledged.
type inbound interface {
	Subject() string
	Data() []byte
	Headers() nats.Header
	Ack() error
}

// stored is a proposal read from the inbox stream by sequence. It is
// acknowledged when the consumer redelivers it (as a duplicate).
type stored struct{ *jetstream.RawStreamMsg }

func (m stored) Subject() string      { return m.RawStreamMsg.Subject }
func (m stored) Data() []byte         { return m.RawStreamMsg.Data }
func (m stored) Headers() nats.Header { return m.RawStreamMsg.Header }
func (m stored) Ack() error           { return nil }

// takeOver decides, in stream order, the proposals that were delivered to a
// decider that never acknowledged them (it crashed). JetStream would
// redeliver them only after the ack wait, after newer proposals: a run's
// metric rows would then arrive out of order, and rows at or below the last
// step are dropped. Deciding is idempotent, so deciding them again when
// they are redelivered (or while a live decider still holds them) is safe.
func (d *Decider) takeOver(ctx context.Context, name string, cons jetstream.Consumer) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("decider consumer: %w", err)
	}
	if name == bus.BulkStream {
		d.lastBulk = info.Delivered.Stream // see fillBulkGap
	}
	if info.NumAckPending == 0 {
		return nil
	}
	// A killed decider's pull requests stay open on the server until they
	// expire (1 s, see lane) and may still take messages after this
	// snapshot, which would then come back only after the ack wait, out of
	// order: wait them out first.
	for deadline := time.Now().Add(3 * time.Second); info.NumWaiting > 0 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if info, err = cons.Info(ctx); err != nil {
			return fmt.Errorf("decider consumer: %w", err)
		}
	}
	stream, err := d.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("inbox stream %s: %w", name, err)
	}
	from, to := info.AckFloor.Stream+1, info.Delivered.Stream
	d.log.Info("taking over unacknowledged proposals", "from", from, "to", to, "pending", info.NumAckPending)
	batch := make([]inbound, 0, 500)
	for seq := from; seq <= to; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // acknowledged, so removed
		}
		if err != nil {
			return fmt.Errorf("take over proposal %d: %w", seq, err)
		}
		batch = append(batch, stored{m})
		if len(batch) == cap(batch) || seq == to {
			if err := d.decideTakenOver(ctx, stream, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return d.decideTakenOver(ctx, stream, batch)
}

// decideTakenOver decides proposals taken over and removes them from the
// inbox (which acknowledges them: a work-queue stream keeps only what is
// not yet acknowledged), so that a decider killed again soon after does
// not take them over again.
func (d *Decider) decideTakenOver(ctx context.Context, stream jetstream.Stream, batch []inbound) error {
	if len(batch) == 0 {
		return nil
	}
	if err := d.decideBatch(ctx, batch); err != nil {
		return err
	}
	for _, m := range batch {
		// A failure is harmless (acknowledged meanwhile, or it comes
		// again and is decided as a duplicate).
		if err := stream.DeleteMsg(ctx, m.(stored).Sequence); err != nil {
			d.log.Debug("remove decided proposal", "seq", m.(stored).Sequence, "err", err)
		}
	}
	return nil
}

func msgID(m inbound) string {
	if h := m.Headers(); h != nil {
		return h.Get(jetstream.MsgIDHeader)
	}
	return ""
}

func (d *Decider) recordRejection(ctx context.Context, p events.Event, r *policy.Rejection) {
	var body json.RawMessage
	if p.Payload != nil {
		body, _ = events.Encode(p)
	}
	rec := RejectionRecord{Actor: p.Actor, Code: r.Code, Message: r.Message, Time: time.Now().UTC()}
	rec.Proposal, rec.Summary = rejectedProposal(p, body)
	data, _ := json.Marshal(rec)
	entity := p.Entity
	if events.ValidateEntity(entity) != nil {
		entity = "_invalid"
	}
	project := p.Project
	if project != "" && events.ValidateProject(project) != nil {
		project = "_invalid"
	}
	id := p.ID
	if id == "" {
		id = events.NewID(time.Now())
	}
	if _, err := bus.Append(ctx, d.js, bus.Msg{Subject: d.subj.Rejection(entity, project), ID: id, Data: data}); err != nil {
		d.log.Warn("record rejection", "proposal", p.ID, "err", err)
	}
	d.observe(p.Type, "rejected", string(r.Code), 0)
	d.log.Debug("rejected", "proposal", p.ID, "actor", p.Actor, "code", r.Code, "reason", r.Message)
}

func (d *Decider) notify(proposalID string, out Outcome) {
	if proposalID == "" {
		return
	}
	data, _ := json.Marshal(out)
	if err := d.nc.Publish(d.subj.Decided(proposalID), data); err != nil {
		d.log.Warn("notify decision", "proposal", proposalID, "err", err)
	}
}

// seed creates the first site admin and its key when the log has no users,
// in one atomic batch conditional on the admin's entity having no events, so
// two processes starting at once create it once and a crash never leaves an
// admin without its key.
func (d *Decider) seed(ctx context.Context) error {
	if d.Seed == nil || len(d.state.Users) > 0 {
		return nil
	}
	id := events.NewID(time.Now())
	now := time.Now().UTC()
	evs := []events.Event{
		{Payload: events.UserCreatedV1{Username: d.Seed.Username, DisplayName: "Site admin", SiteAdmin: true}},
		{Payload: events.KeyCreatedV1{Username: d.Seed.Username, KeyID: "admin", Name: "bootstrap", Hash: d.Seed.KeyHash}},
	}
	for i := range evs {
		e := &evs[i]
		e.ID, e.Type = events.DerivedID(id, i), e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		e.Entity, e.Actor, e.Time, e.Cause = d.Seed.Username, d.Seed.Username, now, id
	}
	msgs, err := d.messages(evs)
	if err != nil {
		return err
	}
	seqs, err := bus.AppendBatch(ctx, d.nc, msgs)
	if errors.Is(err, bus.ErrConflict) || errors.Is(err, bus.ErrAlreadyAppended) {
		return d.load(ctx) // another process seeded first
	}
	if err != nil {
		return fmt.Errorf("create the first admin: %w", err)
	}
	for i, e := range evs {
		d.state.Apply(seqs[i], e)
	}
	d.SeedCreated = true
	return nil
}
