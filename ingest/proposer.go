package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
)

// ErrUndecided means the proposal was stored but its decision did not arrive
// in time; re-sending the same proposal (same id) is safe.
var ErrUndecided = errs.New(errs.Unavailable, "undecided", "the proposal was accepted for processing but not decided in time; retry with the same request")

// BackPressureCounts are what the bounded inbox and the read models' lag
// did to writers of this process: proposals refused with rate_limited (429
// and Retry-After on the native API) and proposals held until there was
// room (the W&B file_stream path, whose clients drop refused data), with
// the time held; Behind counts those held at least once because the read
// models were behind (Freshness), not because the bulk lane was full.
type BackPressureCounts struct {
	Refused, Held, Behind int64
	HeldFor               time.Duration
}

var backPressure struct{ refused, held, behind, heldNanos atomic.Int64 }

// BackPressure returns the process's counts since it started.
func BackPressure() BackPressureCounts {
	return BackPressureCounts{Refused: backPressure.refused.Load(), Held: backPressure.held.Load(),
		Behind: backPressure.behind.Load(), HeldFor: time.Duration(backPressure.heldNanos.Load())}
}

type holdKey struct{}

// HoldWhenFull marks ctx so that a metric batch meeting a full bulk lane
// (or read models too far behind) is held until there is room (or ctx
// ends) instead of refused: for clients that drop data on an error status
// (the W&B SDK ignores file_stream's).
func HoldWhenFull(ctx context.Context) context.Context {
	return context.WithValue(ctx, holdKey{}, true)
}

func holding(ctx context.Context) bool { h, _ := ctx.Value(holdKey{}).(bool); return h }

// RetryAfterFull is what a writer refused by a full bulk lane is told to
// wait: about the time the decider takes to clear a quarter of the lane.
const RetryAfterFull = 250 * time.Millisecond

// lagPoll is how often a batch held for the read models' lag looks again.
const lagPoll = 10 * time.Millisecond

// errBehind is a batch not appended because the read models are behind.
var errBehind = errors.New("the read models are behind the log")

// appendBulk appends a batch to the bulk lane. Past the lane's bound, or
// while the read models are more than Freshness.MaxLag behind, it is held
// up to MaxHold, then refused with rate_limited and a Retry-After; or held
// until it goes through when ctx says so.
func (pr *Proposer) appendBulk(ctx context.Context, msg bus.Msg) error {
	err := pr.tryBulk(ctx, msg)
	if !held(err) {
		return err
	}
	// Hold the request a moment first: the lane drains in about a quarter
	// of a second, and Retry-After counts whole seconds, so refusing at
	// once would idle a writer for a second each time.
	limit := time.Now().Add(MaxHold)
	if holding(ctx) {
		limit = time.Time{}
	}
	start := time.Now()
	wait := 5 * time.Millisecond
	behind := errors.Is(err, errBehind)
	for held(err) && (limit.IsZero() || time.Now().Before(limit)) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
		if errors.Is(err, errBehind) {
			// Looking at the lag costs no request: look often, so that
			// the projector does not run dry while writers back off.
			wait = lagPoll
		}
		err = pr.tryBulk(ctx, msg)
		behind = behind || errors.Is(err, errBehind)
	}
	backPressure.heldNanos.Add(int64(time.Since(start)))
	if behind {
		backPressure.behind.Add(1)
	}
	if held(err) {
		backPressure.refused.Add(1)
		return refusal(err)
	}
	backPressure.held.Add(1)
	return err
}

// tryBulk appends a batch to the bulk lane unless the read models are
// behind.
func (pr *Proposer) tryBulk(ctx context.Context, msg bus.Msg) error {
	if pr.Freshness.Holding() {
		return errBehind
	}
	_, err := bus.Append(ctx, pr.js, msg)
	return err
}

// held reports whether err is a batch to hold and try again.
func held(err error) bool { return errors.Is(err, bus.ErrFull) || errors.Is(err, errBehind) }

// refusal is the answer to a batch held for too long.
func refusal(err error) error {
	e := errs.New(errs.RateLimited, "inbox_full", "Logbook is taking in data slower than it arrives; retry in %s", RetryAfterFull)
	if errors.Is(err, errBehind) {
		e = errs.New(errs.RateLimited, "read_model_behind", "Logbook's read model is behind the data logged; retry in %s", RetryAfterFull)
	}
	e.RetryAfter = RetryAfterFull
	return e
}

// MaxHold is how long a native request meeting a full bulk lane is held
// before it is refused (W&B's are held until there is room).
var MaxHold = time.Second

// Holding is the ingest service as the W&B file_stream path uses it: a
// metric batch that meets a full bulk lane is held, never refused.
type Holding struct{ *Service }

// LogRows is Service.LogRows with HoldWhenFull.
func (h Holding) LogRows(ctx context.Context, actor, id, entity, project, run string, rows events.MetricsLoggedV2) (Outcome, error) {
	return h.Service.LogRows(HoldWhenFull(ctx), actor, id, entity, project, run, rows)
}

// Proposer publishes proposals to the inbox stream on behalf of an
// authenticated actor.
type Proposer struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	subj events.Subjects
	// Timeout bounds how long Propose waits for a decision.
	Timeout time.Duration
	// Freshness, when set, holds metric batches while the read models
	// are behind (see appendBulk).
	Freshness *Freshness
}

// NewProposer returns a proposer publishing through nc/js.
func NewProposer(nc *nats.Conn, js jetstream.JetStream, subj events.Subjects) *Proposer {
	return &Proposer{nc: nc, js: js, subj: subj, Timeout: 15 * time.Second}
}

// Propose stores the proposal p (with p.Actor the verified caller) in the
// inbox and, when wait is set, waits for its decision. Without wait the
// outcome only says the proposal is durably queued.
func (pr *Proposer) Propose(ctx context.Context, p events.Event, wait bool) (Outcome, error) {
	if p.ID == "" {
		p.ID = events.NewID(time.Now())
	}
	if p.Time.IsZero() {
		p.Time = time.Now().UTC()
	}
	data, err := events.Encode(p)
	if err != nil {
		return Outcome{}, err
	}
	return pr.propose(ctx, p, data, wait)
}

func (pr *Proposer) propose(ctx context.Context, p events.Event, data []byte, wait bool) (Outcome, error) {
	if len(data) > bus.MaxPayload-4096 {
		return Outcome{}, fmt.Errorf("the request is %d bytes once encoded; the limit is %d", len(data), bus.MaxPayload-4096)
	}
	msg := bus.Msg{Subject: pr.subj.Proposal(p.Actor, p), ID: p.ID, Data: data}
	_, metrics := p.Payload.(events.MetricsLoggedV2)
	if !wait && metrics && events.ValidateRunID(p.Run) == nil {
		// A batch the edge's dry run accepted: its run is known (its start
		// is decided), so it may take the bulk lane (see bus.BulkStream).
		msg.Subject = pr.subj.Bulk(p.Actor, p)
		return Outcome{Accepted: true}, storageFull(pr.appendBulk(ctx, msg))
	}
	if !metrics && p.Run != "" {
		// A control proposal about a run is decided before the caller
		// hears back, so that the run's next batch, which the client sends
		// after the answer in the bulk lane, cannot overtake it (a W&B
		// chunk's history bookkeeping, then its rows).
		wait = true
	}
	if !wait {
		_, err := bus.Append(ctx, pr.js, msg)
		return Outcome{Accepted: true}, storageFull(err)
	}
	sub, err := pr.nc.SubscribeSync(pr.subj.Decided(p.ID))
	if err != nil {
		return Outcome{}, fmt.Errorf("await decision: %w", err)
	}
	defer sub.Unsubscribe()
	if _, err := bus.Append(ctx, pr.js, msg); err != nil {
		return Outcome{}, storageFull(err)
	}
	wctx, cancel := context.WithTimeout(ctx, pr.Timeout)
	defer cancel()
	m, err := sub.NextMsgWithContext(wctx)
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{}, ctx.Err()
		}
		return Outcome{}, ErrUndecided
	}
	var out Outcome
	if err := json.Unmarshal(m.Data, &out); err != nil {
		return Outcome{}, fmt.Errorf("decode decision: %w", err)
	}
	return out, nil
}

// ErrStorageFull is a proposal the inbox had no room for (bus.ErrStorageFull):
// nothing was stored; the same request can be sent again later.
var ErrStorageFull = &errs.Error{Kind: errs.StorageFull, Code: "storage_full",
	Message: "Logbook's storage is full: the write was not stored; retry once space is freed", RetryAfter: 5 * time.Second}

// storageFull returns ErrStorageFull for a publish refused for lack of
// space (the first write of a request fails fast rather than waiting), and
// any other error as it is.
func storageFull(err error) error {
	if errors.Is(err, bus.ErrStorageFull) {
		return ErrStorageFull
	}
	return err
}
