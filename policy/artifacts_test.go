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
