package events

import "testing"

// TestBulkSubject: a batch's bulk-lane subject carries the run as one
// token, matches its run's and its project's filters, and parses back to
// the proposal's user, entity, project and type.
func TestBulkSubject(t *testing.T) {
	s := Subjects{Prefix: "lb"}
	e := Event{Entity: "alice", Project: "resnet.v2", Run: "exp.1", Payload: MetricsLoggedV2{}}
	subj := s.Bulk("alice", e)
	if subj != "lb.bulk.alice.alice.resnet%2Ev2.exp%2E1.metrics_logged" {
		t.Fatalf("bulk subject %q", subj)
	}
	if f := s.BulkOfRun("alice", "resnet.v2", "exp.1"); f != "lb.bulk.*.alice.resnet%2Ev2.exp%2E1.*" {
		t.Fatalf("run filter %q", f)
	}
	if f := s.BulkOfRun("alice", "resnet.v2", ""); f != "lb.bulk.*.alice.resnet%2Ev2.>" {
		t.Fatalf("project filter %q", f)
	}
	user, entity, project, typ, err := s.ParseProposal(subj)
	if err != nil || user != "alice" || entity != "alice" || project != "resnet.v2" || typ != MetricsLogged {
		t.Fatalf("ParseProposal = %q %q %q %q %v", user, entity, project, typ, err)
	}
	if _, _, _, _, err := s.ParseProposal("lb.bulk.alice.alice.p.metrics_logged"); err == nil {
		t.Fatal("a bulk subject without its run token parsed")
	}
}
