package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// An event of the log that this decider cannot decode (corrupt, written by
// a newer binary, injected) must not stop it: the decider is what accepts
// the site admin's quarantine of that event. So the decider skips it,
// remembers it as unreadable, and refuses proposals on its aggregate (the
// project, or the entity for entity-level subjects) with event_unreadable
// (503, retryable) until it is quarantined: its state there may be wrong.
// Every other aggregate is served as usual. Once quarantined, the event is
// skipped for good, by this decider and by every replay of the log.

// aggregate is the entity and project of an event's subject (ok is false
// when the subject is not an event subject).
type aggregate struct {
	entity, project string
	ok              bool
}

// loadQuarantines marks the quarantined sequences in the state before the
// log is replayed: each quarantine comes after the event it skips.
func (d *Decider) loadQuarantines(ctx context.Context) error {
	err := bus.Read(ctx, d.js, bus.ReadOptions{Stream: bus.EventsStream, Filter: d.subj.Quarantines(), Log: d.log}, func(batch []bus.Entry) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, en := range batch {
			e, err := events.Decode(en.Data)
			if err != nil {
				continue // a quarantine no one can read quarantines nothing
			}
			if q, ok := e.Payload.(events.EventQuarantinedV1); ok && q.Seq < en.Seq {
				d.state.Quarantine(q.Seq)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the quarantined sequences: %w", err)
	}
	return nil
}

// applyEntry folds one event of the log into the state (d.mu held): a
// quarantined one only moves its aggregate's sequence, an unreadable one
// is remembered, any other is applied.
func (d *Decider) applyEntry(en bus.Entry) {
	entity, project, ok := d.subj.ParseEvent(en.Subject)
	if d.state.Quarantined(en.Seq) {
		if ok {
			d.state.Advance(entity, project, en.Seq)
		}
		delete(d.unreadable, en.Seq)
		return
	}
	e, err := events.Decode(en.Data)
	if err != nil {
		if _, seen := d.unreadable[en.Seq]; !seen {
			d.unreadable[en.Seq] = aggregate{entity, project, ok}
			u := &events.UnreadableError{Seq: en.Seq, Err: err}
			d.log.Error("policy state: an unreadable event is skipped; proposals on its aggregate are refused until it is quarantined",
				"seq", en.Seq, "subject", en.Subject, "err", u.Error())
		}
		return
	}
	d.apply(en.Seq, e)
}

// apply applies an event stored at seq to the state (d.mu held); a
// quarantine also ends the refusals on the aggregate of the event it
// skips.
func (d *Decider) apply(seq uint64, e events.Event) {
	d.state.Apply(seq, e)
	if q, ok := e.Payload.(events.EventQuarantinedV1); ok && q.Seq < seq {
		if a, was := d.unreadable[q.Seq]; was {
			delete(d.unreadable, q.Seq)
			if a.ok {
				d.state.Advance(a.entity, a.project, q.Seq)
			}
			d.log.Info("unreadable event quarantined; its aggregate is served again", "seq", q.Seq, "reason", q.Reason)
		}
	}
}

// Unreadable returns the sequences of the events this decider could not
// read and no one has quarantined.
func (d *Decider) Unreadable() []uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]uint64, 0, len(d.unreadable))
	for seq := range d.unreadable {
		out = append(out, seq)
	}
	slices.Sort(out)
	return out
}

// precheck refuses, before the policy decides, a proposal on an aggregate
// that holds an unreadable event, and a quarantine of an event that does
// not exist or that this decider can read (running read models have
// applied it: skipping it only in later replays would make them differ).
func (d *Decider) precheck(ctx context.Context, p events.Event) *policy.Rejection {
	if q, ok := p.Payload.(events.EventQuarantinedV1); ok {
		return d.checkQuarantine(ctx, q.Seq)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.unreadableIn(p.Entity, p.Project)
}

// unreadableIn refuses a proposal on an aggregate that holds an unreadable
// event (d.mu held).
func (d *Decider) unreadableIn(entity, project string) *policy.Rejection {
	for seq, a := range d.unreadable {
		if a.ok && a.entity == entity && a.project == project {
			return &policy.Rejection{Code: policy.CodeEventUnreadable, Message: fmt.Sprintf(
				"%s/%s holds an event this server cannot read (stream sequence %d); a site admin skips it with: %s",
				entity, project, seq, events.QuarantineCommand(seq))}
		}
	}
	return nil
}

// refreshFor refreshes the aggregates of a decision's events after an
// append conflict (d.mu held) and refuses the proposal if one of them
// turns out to hold an unreadable event: deciding again would conflict
// forever, since the state cannot know that aggregate's last sequence.
func (d *Decider) refreshFor(ctx context.Context, evs []events.Event) (*policy.Rejection, error) {
	for _, e := range evs {
		if err := d.refresh(ctx, e.Entity, e.Project); err != nil {
			return nil, err
		}
		if r := d.unreadableIn(e.Entity, e.Project); r != nil {
			return r, nil
		}
	}
	return nil, nil
}

func (d *Decider) checkQuarantine(ctx context.Context, seq uint64) *policy.Rejection {
	if seq == 0 {
		return nil // the policy says why
	}
	stream, err := d.js.Stream(ctx, bus.EventsStream)
	var m *jetstream.RawStreamMsg
	if err == nil {
		m, err = stream.GetMsg(ctx, seq)
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return &policy.Rejection{Code: policy.CodeInvalid, Message: fmt.Sprintf("the log has no event at stream sequence %d", seq)}
	case err != nil:
		return &policy.Rejection{Code: policy.CodeEventUnreadable, Message: fmt.Sprintf("read the event at sequence %d: %v; retry", seq, err)}
	}
	if _, err := events.Decode(m.Data); err == nil {
		return &policy.Rejection{Code: policy.CodeInvalid, Message: fmt.Sprintf(
			"the event at stream sequence %d is readable; only events that cannot be decoded are quarantined", seq)}
	}
	return nil
}
