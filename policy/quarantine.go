package policy

import (
	"strings"
	"unicode/utf8"

	"github.com/logbook/logbook/events"
)

// Quarantine: a site admin's decision that the event at one stream
// sequence of the log (one that cannot be decoded or applied: corrupt,
// written by a newer binary, or injected) is skipped by every replayer.
// The decision is an event like any other (event_quarantined), stored on
// the admin's entity-level subject so the site audit shows who skipped
// what and why. A quarantine covers only an earlier sequence than its own
// (replayers ignore any other), so it can never hide a later event.

// MaxQuarantineReason bounds the reason of a quarantine.
const MaxQuarantineReason = 1000

func decideEventQuarantined(pr *proposal, pl events.EventQuarantinedV1) Decision {
	if !pr.may(ScopeSite, "", QuarantineEvents) {
		return reject(CodeForbidden, "only a site admin may quarantine events of the log")
	}
	if pr.p.Entity != pr.actor.Username || pr.p.Project != "" {
		return reject(CodeInvalid, "a quarantine is recorded on the deciding admin's own entity (%q), not %s/%s",
			pr.actor.Username, pr.p.Entity, pr.p.Project)
	}
	if pl.Seq == 0 {
		return reject(CodeInvalid, "give the stream sequence of the event to quarantine (seq >= 1)")
	}
	reason := strings.TrimSpace(pl.Reason)
	if reason == "" {
		return reject(CodeInvalid, "say why the event is quarantined (reason); the audit shows it")
	}
	if len(reason) > MaxQuarantineReason || !utf8.ValidString(reason) {
		return reject(CodeInvalid, "the reason must be valid UTF-8 of at most %d bytes", MaxQuarantineReason)
	}
	if pr.s.Quarantined(pl.Seq) {
		return reject(CodeAlreadyQuarantined, "the event at sequence %d is already quarantined", pl.Seq)
	}
	return Decision{Events: []events.Event{pr.in(events.EventQuarantinedV1{Seq: pl.Seq, Reason: reason})}}
}

// Quarantined reports whether the event at stream sequence seq is
// quarantined (skipped by every replayer).
func (s *State) Quarantined(seq uint64) bool { return s.quarantined[seq] }

// Quarantine marks seq as quarantined before the quarantine event itself
// is applied: a replay of the log learns the quarantined sequences first
// (they come after the events they skip).
func (s *State) Quarantine(seq uint64) { s.quarantined[seq] = true }
