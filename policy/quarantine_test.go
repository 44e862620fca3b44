package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

func TestQuarantineRule(t *testing.T) {
	s := NewState()
	s.Apply(1, events.Event{Entity: "root", Type: events.UserCreated, Payload: events.UserCreatedV1{Username: "root", SiteAdmin: true}})
	s.Apply(2, events.Event{Entity: "bob", Type: events.UserCreated, Payload: events.UserCreatedV1{Username: "bob"}})
	propose := func(actor, entity string, seq uint64, reason string) Decision {
		return Decide(s, events.Event{ID: events.NewID(time.Now()), Actor: actor, Entity: entity, Type: events.EventQuarantined,
			Payload: events.EventQuarantinedV1{Seq: seq, Reason: reason}})
	}
	for _, c := range []struct {
		name, actor, entity string
		seq                 uint64
		reason              string
		code                Code
	}{
		{"not a site admin", "bob", "bob", 2, "x", CodeForbidden},
		{"on another entity", "root", "bob", 2, "x", CodeInvalid},
		{"no sequence", "root", "root", 0, "x", CodeInvalid},
		{"no reason", "root", "root", 2, "  ", CodeInvalid},
		{"reason too long", "root", "root", 2, strings.Repeat("x", MaxQuarantineReason+1), CodeInvalid},
	} {
		if d := propose(c.actor, c.entity, c.seq, c.reason); d.Rejection == nil || d.Rejection.Code != c.code {
			t.Errorf("%s: %+v, want %s", c.name, d, c.code)
		}
	}
	d := propose("root", "root", 2, " corrupt ")
	if d.Rejection != nil || len(d.Events) != 1 || d.Events[0].Payload.(events.EventQuarantinedV1).Reason != "corrupt" {
		t.Fatalf("site admin quarantine: %+v", d)
	}
	s.Apply(3, d.Events[0])
	if !s.Quarantined(2) {
		t.Fatal("seq 2 not quarantined after the event")
	}
	if d := propose("root", "root", 2, "again"); d.Rejection == nil || d.Rejection.Code != CodeAlreadyQuarantined {
		t.Errorf("second quarantine of seq 2: %+v", d)
	}
	// A quarantine never covers its own or a later sequence.
	s.Apply(4, events.Event{Entity: "root", Type: events.EventQuarantined, Payload: events.EventQuarantinedV1{Seq: 9, Reason: "future"}})
	if s.Quarantined(9) {
		t.Error("a quarantine of a later sequence than its own took effect")
	}
}
