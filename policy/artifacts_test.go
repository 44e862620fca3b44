package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// TestArtifactFold: commit gives vN and moves aliases atomically, a use is
// recorded once as the run's input (lineage both ways), delete needs force
// while aliases are held, and GC's live set drops the deleted version.
func TestArtifactFold(t *testing.T) {
	s := matrixWorld(t)
	seq := uint64(1000)
	decideApply := func(actor string, p events.Event) Decision {
		t.Helper()
		seq++
		p.ID, p.Actor, p.Time = events.DerivedID("01JDX0000000000000000000Q0", int(seq)), actor, time.Unix(1795779500+int64(seq), 0)
		p.Type = p.Payload.EventType()
		d := Decide(s, p)
		for _, e := range d.Events {
			seq++
			s.Apply(seq, e)
		}
		return d
	}
	proj := func(pl events.Payload) events.Event {
		return events.Event{Entity: "acme", Project: "proj", Payload: pl}
	}
	// art-committed is v0 holding latest; art-pending commits as v1.
	decideApply("member", proj(events.ArtifactAliasesAddedV1{ArtifactID: "art-committed", Aliases: []string{"best"}}))
	if d := decideApply("member", proj(events.ArtifactCommittedV1{ArtifactID: "art-pending", Objects: []string{"o1"}})); d.Rejection != nil || len(d.Events) != 1 {
		t.Fatalf("commit: %+v", d)
	}
	v0, _ := s.Artifact("art-committed")
	v1, _ := s.Artifact("art-pending")
	if v1.Index != 1 || fmt.Sprint(v1.Aliases) != "[latest]" || fmt.Sprint(v0.Aliases) != "[best]" {
		t.Fatalf("after commit: v0 %v, v1 %v %v", v0.Aliases, v1.Index, v1.Aliases)
	}
	// Re-committing is a no-op.
	if d := decideApply("member", proj(events.ArtifactCommittedV1{ArtifactID: "art-pending"})); len(d.Events) != 0 || d.Rejection != nil {
		t.Fatalf("second commit: %+v", d)
	}
	// Lineage: member's run uses v0, once.
	use := events.Event{Entity: "acme", Project: "proj", Run: "own-member", Payload: events.ArtifactUsedV1{ArtifactID: "art-committed"}}
	decideApply("member", use)
	if d := decideApply("member", use); len(d.Events) != 0 {
		t.Fatalf("second use recorded: %+v", d)
	}
	if in := s.ArtifactInputs("acme", "proj", "own-member"); len(in) != 1 || in[0].ID != "art-committed" || len(v0.UsedBy) != 1 || v0.Run != "" {
		t.Fatalf("lineage: inputs %v, used by %v", in, v0.UsedBy)
	}
	// Delete: refused with aliases, then forced; latest falls back.
	if d := decideApply("admin", proj(events.ArtifactDeletedV1{ArtifactID: "art-pending"})); d.Rejection == nil || d.Rejection.Code != CodeArtifactHasAliases {
		t.Fatalf("delete with aliases: %+v", d)
	}
	if d := decideApply("member", proj(events.ArtifactDeletedV1{ArtifactID: "art-pending", Force: true})); d.Rejection == nil || d.Rejection.Code != CodeForbidden {
		t.Fatalf("delete by a Member: %+v", d)
	}
	decideApply("admin", proj(events.ArtifactDeletedV1{ArtifactID: "art-pending", Force: true}))
	p, _ := s.Project("acme", "proj")
	if l := p.Collections["ds"].Version(s, "latest"); l == nil || l.ID != "art-committed" {
		t.Fatalf("latest after deleting v1: %+v", l)
	}
	if p.Collections["ds"].Version(s, "v1") != nil {
		t.Fatal("v1 still resolves")
	}
	objects, versions := s.LiveObjects()
	if objects["o1"] || versions["art-pending"] || !versions["art-committed"] {
		t.Fatalf("live set %v %v", objects, versions)
	}
}

// TestPendingArtifactExpiry: the system deletes a version pending for
// PendingArtifactTTL at the proposal's time, never earlier, never a
// committed one; users cannot use the system's rule.
func TestPendingArtifactExpiry(t *testing.T) {
	s := matrixWorld(t)
	a, _ := s.Artifact("art-pending")
	created := a.Created
	prop := func(id string, at time.Time) events.Event {
		return events.Event{ID: events.NewID(at), Actor: SystemActor, Time: at, Entity: "acme", Project: "proj",
			Type: events.ArtifactDeleted, Payload: events.ArtifactDeletedV1{ArtifactID: id}}
	}
	if st := StalePendingArtifacts(s, created.Add(PendingArtifactTTL-time.Second)); len(st) != 0 {
		t.Fatalf("stale too early: %v", st)
	}
	if d := Decide(s, prop("art-pending", created.Add(PendingArtifactTTL-time.Second))); d.Rejection == nil {
		t.Fatalf("expired too early: %+v", d)
	}
	now := created.Add(PendingArtifactTTL)
	st := StalePendingArtifacts(s, now)
	if len(st) != 1 || st[0].ID != "art-pending" {
		t.Fatalf("stale: %v", st)
	}
	if d := Decide(s, prop("art-committed", now.Add(365*24*time.Hour))); d.Rejection != nil || len(d.Events) != 0 {
		t.Fatalf("a committed version expired: %+v", d)
	}
	d := Decide(s, prop("art-pending", now))
	if d.Rejection != nil || len(d.Events) != 1 || d.Events[0].Actor != SystemActor {
		t.Fatalf("expiry: %+v", d)
	}
	s.Apply(5000, d.Events[0])
	if a, _ := s.Artifact("art-pending"); a.State != ArtifactDeleted {
		t.Fatalf("state %s", a.State)
	}
	if _, versions := s.LiveObjects(); versions["art-pending"] {
		t.Fatal("an expired version is still live for GC")
	}
	if st := StalePendingArtifacts(s, now.Add(time.Hour)); len(st) != 0 {
		t.Fatalf("stale after expiry: %v", st)
	}
	// The system may still propose nothing else of artifacts.
	other := prop("art-committed", now)
	other.Type, other.Payload = events.ArtifactAliasesAdded, events.ArtifactAliasesAddedV1{ArtifactID: "art-committed", Aliases: []string{"x"}}
	if d := Decide(s, other); d.Rejection == nil || d.Rejection.Code != CodeForbidden {
		t.Fatalf("system alias: %+v", d)
	}
}

// TestArtifactLink: a link gets the portfolio's next index and "latest"
// (the linked version keeps its own index and aliases); linking again
// only moves new aliases; a portfolio takes no versions of its own; a
// pending version cannot be linked.
func TestArtifactLink(t *testing.T) {
	s := matrixWorld(t)
	seq := uint64(2000)
	decideApply := func(p events.Event) Decision {
		t.Helper()
		seq++
		p.ID, p.Actor, p.Time = events.DerivedID("01JDX0000000000000000000Q1", int(seq)), "member", time.Unix(1795779500+int64(seq), 0)
		p.Type = p.Payload.EventType()
		d := Decide(s, p)
		for _, e := range d.Events {
			seq++
			s.Apply(seq, e)
		}
		return d
	}
	link := func(id string, aliases ...string) Decision {
		return decideApply(events.Event{Entity: "acme", Project: "proj", Payload: events.ArtifactLinkedV1{ArtifactID: id, Portfolio: "reg", Aliases: aliases}})
	}
	d := link("art-committed", "staging")
	if d.Rejection != nil || len(d.Events) != 1 {
		t.Fatalf("link: %+v", d)
	}
	pl := d.Events[0].Payload.(events.ArtifactLinkedV1)
	if pl.VersionIndex != 0 || fmt.Sprint(pl.Aliases) != "[staging latest]" || pl.Type != "dataset" || pl.ArtifactEntity != "acme" {
		t.Fatalf("link event %+v", pl)
	}
	p, _ := s.Project("acme", "proj")
	reg := p.Collections["reg"]
	if !reg.Portfolio || reg.Version(s, "staging") == nil || reg.Version(s, "v0").ID != "art-committed" {
		t.Fatalf("portfolio %+v", reg)
	}
	if a, _ := s.Artifact("art-committed"); fmt.Sprint(a.Aliases) != "[latest]" || a.Index != 0 {
		t.Fatalf("the linked version changed: %v %d", a.Aliases, a.Index)
	}
	if d := link("art-committed", "staging"); d.Rejection != nil || len(d.Events) != 0 {
		t.Fatalf("second link: %+v", d)
	}
	if d := link("art-committed", "prod"); d.Rejection != nil || len(d.Events) != 1 || d.Events[0].Payload.(events.ArtifactLinkedV1).VersionIndex != 0 {
		t.Fatalf("link with a new alias: %+v", d)
	}
	if d := link("art-pending"); d.Rejection == nil || d.Rejection.Code != CodeArtifactNotFound {
		t.Fatalf("link of a pending version: %+v", d)
	}
	if d := decideApply(events.Event{Entity: "acme", Project: "proj", Payload: events.ArtifactCreatedV1{ArtifactID: "art-x", Collection: "reg",
		Type: "dataset", Digest: "dx"}}); d.Rejection == nil || d.Rejection.Code != CodeArtifactExists {
		t.Fatalf("a version logged into a portfolio: %+v", d)
	}
	if d := decideApply(events.Event{Entity: "acme", Project: "proj", Payload: events.ArtifactLinkedV1{ArtifactID: "art-committed", Portfolio: "ds"}}); d.Rejection == nil {
		t.Fatalf("a link into a collection with versions of its own: %+v", d)
	}
}
