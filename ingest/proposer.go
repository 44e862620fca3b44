package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Proposer publishes proposals to the inbox stream on behalf of an
// authenticated actor.
type Proposer struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	subj events.Subjects
	// Timeout bounds how long Propose waits for a decision.
	Timeout time.Duration
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

// ProposeMetrics is Propose for a metrics_logged proposal whose payload's
// JSON is payload, as events.ParseMetricsPayload accepted it (the body of a
// log request): it is passed through, not encoded again.
func (pr *Proposer) ProposeMetrics(ctx context.Context, p events.Event, payload []byte, wait bool) (Outcome, error) {
	if p.ID == "" {
		p.ID = events.NewID(time.Now())
	}
	if p.Time.IsZero() {
		p.Time = time.Now().UTC()
	}
	data, ok := events.EncodeMetricsWith(p, payload)
	if !ok {
		return pr.Propose(ctx, p, wait)
	}
	return pr.propose(ctx, p, data, wait)
}

func (pr *Proposer) propose(ctx context.Context, p events.Event, data []byte, wait bool) (Outcome, error) {
	if len(data) > bus.MaxPayload-4096 {
		return Outcome{}, fmt.Errorf("the request is %d bytes once encoded; the limit is %d", len(data), bus.MaxPayload-4096)
	}
	msg := bus.Msg{Subject: pr.subj.Proposal(p.Actor, p), ID: p.ID, Data: data}
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
