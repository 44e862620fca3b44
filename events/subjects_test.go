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

// TestReceiveLines: a jump of the offset is a gap, a retried chunk changes
// nothing, a late chunk fills (part of) a gap.
func TestReceiveLines(t *testing.T) {
	h := "wandb-history.jsonl"
	n, gaps, d := ReceiveLines(0, nil, -1, RunStreamReceivedV1{File: h, Offset: 0, Count: 20, FirstStep: 0})
	if n != 20 || len(gaps) != 0 || d != 0 {
		t.Fatalf("first chunk: %d %v %d", n, gaps, d)
	}
	n, gaps, d = ReceiveLines(n, gaps, 19, RunStreamReceivedV1{File: h, Offset: 40, Count: 10, FirstStep: 40})
	if n != 50 || len(gaps) != 1 || gaps[0] != (LineGap{FirstLine: 20, LastLine: 39, AfterStep: 19, BeforeStep: 40}) || d != 20 {
		t.Fatalf("jump: %d %v %d", n, gaps, d)
	}
	n2, gaps2, d2 := ReceiveLines(n, gaps, 49, RunStreamReceivedV1{File: h, Offset: 40, Count: 10, FirstStep: 40})
	if n2 != 50 || len(gaps2) != 1 || d2 != 0 {
		t.Fatalf("retry: %d %v %d", n2, gaps2, d2)
	}
	n, gaps, d = ReceiveLines(n, gaps, 49, RunStreamReceivedV1{File: h, Offset: 25, Count: 5, FirstStep: 25})
	if n != 50 || len(gaps) != 2 || gaps[0].LastLine != 24 || gaps[1].FirstLine != 30 || gaps[1].LastLine != 39 || d != -5 {
		t.Fatalf("fill: %d %v %d", n, gaps, d)
	}
}
