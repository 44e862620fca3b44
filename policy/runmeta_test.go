package policy_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// TestNoOpUpdatesAppendNothing: an update that changes nothing (the same
// values, tags already there, config keys with the same values in any
// spacing) decides no event; any real change does.
func TestNoOpUpdatesAppendNothing(t *testing.T) {
	w := given(t)
	w.must("bob", t0, "", events.RunStartedV1{RunID: "r1", Name: "n", JobType: "train", Group: "g", Notes: "x",
		Tags: []string{"a", "b"}, Config: json.RawMessage(`{"lr":0.1,"net":{"layers":[1,2]}}`), Wandb: json.RawMessage(`{"host":"h"}`)})
	n := func(pl events.RunUpdatedV1) int { t.Helper(); return len(w.must("bob", t0, "r1", pl).Events) }
	for i, pl := range []events.RunUpdatedV1{
		{},
		{Name: ptr("n"), JobType: ptr("train"), Group: ptr("g"), Notes: ptr("x")},
		{AddTags: []string{"a"}, RemoveTags: []string{"zzz"}},
		{Config: json.RawMessage(`{ "net" : { "layers" : [1, 2] } }`)},
		{Config: json.RawMessage(`{}`), Wandb: json.RawMessage(`{"host":"h"}`)},
	} {
		if got := n(pl); got != 0 {
			t.Errorf("no-op update %d decided %d events", i, got)
		}
	}
	for i, pl := range []events.RunUpdatedV1{
		{Name: ptr("n2")},
		{JobType: ptr("eval")},
		{Group: ptr("")},
		{Notes: ptr("y")},
		{AddTags: []string{"c"}},
		{RemoveTags: []string{"a"}},
		{AddTags: []string{"b"}, RemoveTags: []string{"b"}},
		{Config: json.RawMessage(`{"lr":0.2}`)},
		{Config: json.RawMessage(`{"epochs":3}`)},
		{Wandb: json.RawMessage(`{"host":"h2"}`)},
	} {
		if got := n(pl); got != 1 {
			t.Errorf("update %d (%+v) decided %d events, want 1", i, pl, got)
		}
		// The same update again is now a no-op.
		if got := n(pl); got != 0 && pl.Name == nil {
			t.Errorf("update %d repeated decided %d events", i, got)
		}
	}
	// A resume's config counts too.
	w.must("bob", t0, "r1", events.RunFinishedV1{})
	w.must("bob", t0, "", events.RunStartedV1{RunID: "r1", Resume: "allow", Config: json.RawMessage(`{"lr":0.3}`)})
	if got := n(events.RunUpdatedV1{Config: json.RawMessage(`{"lr":0.3}`)}); got != 0 {
		t.Errorf("config set by the resume: %d events", got)
	}
}

// TestLineOffsetsContinue: lines are written at the next line number or
// over written ones, never past them.
func TestLineOffsetsContinue(t *testing.T) {
	w := given(t)
	w.start("bob", "r1", "")
	lines := func(off int64, n int) events.RunLinesWrittenV1 {
		pl := events.RunLinesWrittenV1{File: "output.log", Offset: off}
		for i := 0; i < n; i++ {
			pl.Lines = append(pl.Lines, fmt.Sprint("line ", off+int64(i)))
		}
		return pl
	}
	w.must("bob", t0, "r1", lines(0, 3))
	w.must("bob", t0, "r1", lines(3, 2))
	w.must("bob", t0, "r1", lines(4, 1)) // a rewritten last line
	w.must("bob", t0, "r1", lines(0, 5)) // a retry
	w.reject(policy.CodeInvalid, "bob", t0, "r1", lines(6, 1))
	w.reject(policy.CodeInvalid, "bob", t0, "r1", lines(1000000000, 2))
	w.must("bob", t0, "r1", events.RunLinesWrittenV1{File: "wandb-events.jsonl", Offset: 0, Lines: []string{"{}"}})
	w.reject(policy.CodeInvalid, "bob", t0, "r1", events.RunLinesWrittenV1{File: "wandb-events.jsonl", Offset: 2, Lines: []string{"{}"}})
	w.must("bob", t0, "r1", lines(5, 1))
}
