package events

import (
	"strings"
	"testing"
)

// TestSubjectTokens: a name without a dot is its own token (old subjects
// stay valid), a dotted name is one token that parses back to the name.
func TestSubjectTokens(t *testing.T) {
	for _, n := range []string{"awesome-segmentation", "Proj_1", "r2289726", "01JDX0000000000000000000AA"} {
		if got := SubjectToken(n); got != n {
			t.Errorf("SubjectToken(%q) = %q, want the name itself", n, got)
		}
	}
	for _, n := range []string{"resnet.v2", "a.b.c", "x%y", "a b"} {
		tok := SubjectToken(n)
		if strings.ContainsAny(tok, ". *>") {
			t.Errorf("SubjectToken(%q) = %q is not one subject token", n, tok)
		}
		back, err := ParseSubjectToken(tok)
		if err != nil || back != n {
			t.Errorf("ParseSubjectToken(%q) = %q, %v; want %q", tok, back, err, n)
		}
	}
	s := Subjects{Prefix: "lb"}
	e := Event{Entity: "alice", Project: "resnet.v2", Payload: RunStartedV1{RunID: "exp.1"}}
	subj := s.Proposal("alice", e)
	if subj != "lb.in.alice.alice.resnet%2Ev2.run_started" {
		t.Fatalf("proposal subject %q", subj)
	}
	user, entity, project, typ, err := s.ParseProposal(subj)
	if err != nil || user != "alice" || entity != "alice" || project != "resnet.v2" || typ != RunStarted {
		t.Fatalf("ParseProposal = %q %q %q %q %v", user, entity, project, typ, err)
	}
	if got := s.Event(Event{Entity: "alice", Project: "awesome-segmentation", Payload: RunStartedV1{}}); got != "lb.ev.alice.awesome-segmentation.run_started" {
		t.Fatalf("old-style subject changed: %q", got)
	}
	if err := ValidateProject("resnet.v2"); err != nil {
		t.Fatal(err)
	}
	if err := ValidateRunID("exp.1"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{".hidden", "a/b", "a:b", "a#b"} {
		if ValidateProject(bad) == nil {
			t.Errorf("project %q accepted", bad)
		}
	}
	if ValidateEntity("a.b") == nil {
		t.Error("entity with a dot accepted")
	}
}
