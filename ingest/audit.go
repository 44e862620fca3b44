package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// AuditEntry is one accepted or rejected action on a project, read from the
// log. Time is when the server stored it; Actor is the verified caller.
type AuditEntry struct {
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Type     events.Type     `json:"type"`
	Run      string          `json:"run,omitempty"`
	Accepted bool            `json:"accepted"`
	Code     policy.Code     `json:"code,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	Seq      uint64          `json:"seq,omitempty"` // events stream sequence of an accepted event
}

// auditSkipped are data events, not actions: the audit trail leaves them
// out (their rejections are listed).
var auditSkipped = map[events.Type]bool{events.MetricsLogged: true, events.RunLinesWritten: true, events.RunHeartbeatRecorded: true}

// ReadAudit reads a project's audit trail from the log, oldest first, since
// its latest project_created event (a deleted and re-created project does
// not show its predecessor's trail).
func ReadAudit(ctx context.Context, js jetstream.JetStream, subj events.Subjects, entity, project string) ([]AuditEntry, error) {
	var filters []string
	for _, t := range events.Types() {
		if !auditSkipped[t] {
			filters = append(filters, subj.Event(events.Event{Entity: entity, Project: project, Type: t}))
		}
	}
	sort.Strings(filters)
	var out []AuditEntry
	var created time.Time
	err := readAll(ctx, js, bus.EventsStream, filters, func(m bus.Entry) error {
		e, err := events.Decode(m.Data)
		if err != nil {
			out = append(out, unreadableEntry(m, err))
			return nil
		}
		if e.Type == events.ProjectCreated {
			out, created = out[:0], m.Time
		}
		details, _ := json.Marshal(e.Payload)
		out = append(out, AuditEntry{Time: m.Time.UTC(), Actor: e.Actor, Type: e.Type, Run: e.Run, Accepted: true,
			Details: details, Seq: m.Seq})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rejected []AuditEntry
	err = readAll(ctx, js, bus.RejectionsStream, []string{subj.Rejection(entity, project)}, func(m bus.Entry) error {
		if m.Time.Before(created) {
			return nil
		}
		en, ok := rejectionEntry(m)
		if !ok {
			return nil
		}
		rejected = append(rejected, en)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out = append(out, rejected...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// ReadEntityAudit reads the audit trail above project level, oldest first:
// the events of an entity itself (a user: its creation and keys; a team:
// its creation and members) and the proposals about it that were refused
// (someone else's keys, a team). entity "*" reads every entity's. Key
// hashes are left out of the details.
func ReadEntityAudit(ctx context.Context, js jetstream.JetStream, subj events.Subjects, entity string) ([]AuditEntry, error) {
	evFilter, rejFilter := subj.Aggregate(entity, ""), subj.Rejection(entity, "")
	if entity == "*" {
		evFilter, rejFilter = subj.EntityEvents(), subj.EntityRejections()
	}
	var out []AuditEntry
	err := readAll(ctx, js, bus.EventsStream, []string{evFilter}, func(m bus.Entry) error {
		e, err := events.Decode(m.Data)
		if err != nil {
			out = append(out, unreadableEntry(m, err))
			return nil
		}
		details, _ := json.Marshal(withoutKeyHash(e.Payload))
		out = append(out, AuditEntry{Time: m.Time.UTC(), Actor: e.Actor, Type: e.Type, Accepted: true, Details: details, Seq: m.Seq})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = readAll(ctx, js, bus.RejectionsStream, []string{rejFilter}, func(m bus.Entry) error {
		if en, ok := rejectionEntry(m); ok {
			out = append(out, en)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// withoutKeyHash blanks the hash of a key event: the audit shows that a
// key was made, never its hash.
func withoutKeyHash(pl events.Payload) events.Payload {
	if k, ok := pl.(events.KeyCreatedV1); ok {
		k.Hash = ""
		return k
	}
	return pl
}

// rejectionEntry is a rejection record as an audit entry.
func rejectionEntry(m bus.Entry) (AuditEntry, bool) {
	var r RejectionRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return AuditEntry{}, false // not ours to judge: skip what cannot be read
	}
	en := AuditEntry{Time: m.Time.UTC(), Actor: r.Actor, Accepted: false, Code: r.Code, Reason: r.Message}
	if r.Summary == nil && r.Proposal != nil {
		// Recorded before proposals were bounded: summarise it here.
		var p events.Event
		_ = json.Unmarshal(r.Proposal, &p)
		_, r.Summary = rejectedProposal(p, r.Proposal)
	}
	if r.Summary != nil {
		en.Type, en.Run = r.Summary.Type, r.Summary.Run
		en.Details, _ = json.Marshal(r.Summary)
	} else if p, err := events.Decode(r.Proposal); err == nil {
		en.Type, en.Run = p.Type, p.Run
		if !auditSkipped[p.Type] {
			en.Details, _ = json.Marshal(withoutKeyHash(p.Payload))
		}
	}
	return en, true
}

// readAll delivers the messages present now on a stream's subjects.
func readAll(ctx context.Context, js jetstream.JetStream, stream string, filters []string, fn func(bus.Entry) error) error {
	err := bus.Read(ctx, js, bus.ReadOptions{Stream: stream, Filters: filters}, func(batch []bus.Entry) error {
		for _, m := range batch {
			if err := fn(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// unreadableEntry shows an event of the log that cannot be decoded (the
// audit lists it rather than failing): type "unreadable", code
// event_unreadable, and the command that quarantines it.
func unreadableEntry(m bus.Entry, err error) AuditEntry {
	u := &events.UnreadableError{Seq: m.Seq, Err: err}
	return AuditEntry{Time: m.Time.UTC(), Type: "unreadable", Code: policy.CodeEventUnreadable, Reason: u.Error(), Seq: m.Seq}
}
