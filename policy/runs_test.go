package policy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const (
	ent  = "team"
	proj = "proj"
)

// world is a log under construction: a team project where alice is Admin,
// bob a Member and carol a Viewer.
type world struct {
	t   *testing.T
	s   *policy.State
	seq uint64
	n   int
}

func given(t *testing.T) *world {
	w := &world{t: t, s: policy.NewState()}
	for _, u := range []string{"admin", "alice", "bob", "carol", "dave"} {
		w.apply(events.Event{Entity: u, Actor: "admin", Time: t0, Payload: events.UserCreatedV1{Username: u, SiteAdmin: u == "admin"}})
	}
	w.apply(events.Event{Entity: ent, Actor: "admin", Time: t0, Payload: events.TeamCreatedV1{Name: ent}})
	w.apply(events.Event{Entity: ent, Project: proj, Actor: "alice", Time: t0, Payload: events.ProjectCreatedV1{Name: proj}})
	w.apply(events.Event{Entity: ent, Project: proj, Actor: "alice", Time: t0, Payload: events.MemberJoinedV1{Username: "bob", Role: events.RoleMember}})
	w.apply(events.Event{Entity: ent, Project: proj, Actor: "alice", Time: t0, Payload: events.MemberJoinedV1{Username: "carol", Role: events.RoleViewer}})
	w.apply(events.Event{Entity: ent, Project: proj, Actor: "alice", Time: t0, Payload: events.MemberJoinedV1{Username: "dave", Role: events.RoleMember}})
	return w
}

func (w *world) apply(e events.Event) {
	w.seq++
	e.Type = e.Payload.EventType()
	w.s.Apply(w.seq, e)
}

// when decides a proposal by actor at time at, applies the accepted events
// and returns the decision.
func (w *world) when(actor string, at time.Time, run string, pl events.Payload) policy.Decision {
	w.t.Helper()
	w.n++
	p := events.Event{ID: events.DerivedID("01JDX00000000000000000000P", w.n), Type: pl.EventType(), Entity: ent, Project: proj,
		Run: run, Actor: actor, Time: at, Payload: pl}
	d := policy.Decide(w.s, p)
	for _, e := range d.Events {
		w.apply(e)
	}
	return d
}

func (w *world) must(actor string, at time.Time, run string, pl events.Payload) policy.Decision {
	w.t.Helper()
	d := w.when(actor, at, run, pl)
	if d.Rejection != nil {
		w.t.Fatalf("%s %s: rejected: %v", actor, pl.EventType(), d.Rejection)
	}
	return d
}

func (w *world) reject(code policy.Code, actor string, at time.Time, run string, pl events.Payload) {
	w.t.Helper()
	before := w.seq
	d := w.when(actor, at, run, pl)
	if d.Rejection == nil || d.Rejection.Code != code {
		w.t.Fatalf("%s %s: decision %+v, want rejection %s", actor, pl.EventType(), d, code)
	}
	if w.seq != before {
		w.t.Fatal("a rejected proposal changed the state")
	}
}

func (w *world) run(id string) *policy.Run {
	p, _ := w.s.Project(ent, proj)
	return p.Runs[id]
}

func (w *world) start(actor, id, name string) policy.Decision {
	w.t.Helper()
	return w.must(actor, t0, "", events.RunStartedV1{RunID: id, Name: name})
}

func startedName(t *testing.T, d policy.Decision) string {
	t.Helper()
	if len(d.Events) != 1 {
		t.Fatalf("decision has %d events, want 1: %+v", len(d.Events), d)
	}
	switch pl := d.Events[0].Payload.(type) {
	case events.RunStartedV1:
		return pl.Name
	}
	t.Fatalf("event is %T, want RunStartedV1", d.Events[0].Payload)
	return ""
}

func TestNamesAreUniqueInAProject(t *testing.T) {
	w := given(t)
	for i := 1; i <= 5; i++ {
		want := "my-run"
		if i > 1 {
			want = fmt.Sprintf("my-run-%d", i)
		}
		if got := startedName(t, w.start("bob", fmt.Sprintf("r%d", i), "my-run")); got != want {
			t.Fatalf("start %d: name %q, want %q", i, got, want)
		}
	}
	// A rename to a taken name gets the next free suffix; the old name is freed.
	d := w.must("bob", t0, "r5", events.RunUpdatedV1{Name: ptr("my-run")})
	if got := *d.Events[0].Payload.(events.RunUpdatedV1).Name; got != "my-run-6" {
		t.Fatalf("rename to my-run gives %q, want my-run-6", got)
	}
	if got := startedName(t, w.start("bob", "r6", "my-run-5")); got != "my-run-5" {
		t.Fatalf("the freed name my-run-5 gives %q", got)
	}
	// Renaming to its own name changes nothing: no event.
	d = w.must("bob", t0, "r1", events.RunUpdatedV1{Name: ptr("my-run")})
	if len(d.Events) != 0 {
		t.Fatalf("rename to the same name gives %+v", d.Events)
	}
	w.reject(policy.CodeInvalid, "bob", t0, "r1", events.RunUpdatedV1{Name: ptr(" padded ")})
}

func TestDefaultRunNameIsReadableAndStable(t *testing.T) {
	w := given(t)
	d := w.must("bob", t0, "", events.RunStartedV1{})
	name := startedName(t, d)
	parts := strings.Split(name, "-")
	if len(parts) != 3 || parts[2] != "1" {
		t.Fatalf("default name %q, want adjective-noun-1", name)
	}
	if a, b := policy.DefaultRunName("x", 7), policy.DefaultRunName("x", 7); a != b {
		t.Fatal("default name is not a function of the proposal")
	}
	// The run id defaults to the proposal id, a ULID.
	if id := d.Events[0].Run; id != d.Events[0].Cause {
		t.Fatalf("run id %q, want the proposal id %q", id, d.Events[0].Cause)
	}
	if got := startedName(t, w.must("bob", t0, "", events.RunStartedV1{})); !strings.HasSuffix(got, "-2") {
		t.Fatalf("second default name %q, want suffix -2", got)
	}
}

func TestRunIDs(t *testing.T) {
	w := given(t)
	w.start("bob", "7c88ci0d", "") // W&B style short id
	w.reject(policy.CodeRunExists, "bob", t0, "", events.RunStartedV1{RunID: "7c88ci0d"})
	w.reject(policy.CodeRunExists, "bob", t0, "", events.RunStartedV1{RunID: "7c88ci0d", Resume: "never"})
	for _, bad := range []string{"a:b", ".x", "-x", "a b", strings.Repeat("x", 65), "ü"} {
		w.reject(policy.CodeInvalid, "bob", t0, "", events.RunStartedV1{RunID: bad})
	}
	w.reject(policy.CodeForbidden, "carol", t0, "", events.RunStartedV1{RunID: "carols"})
	w.reject(policy.CodeInvalid, "bob", t0, "", events.RunStartedV1{RunID: "r2", Resume: "sometimes"})
}

func TestResume(t *testing.T) {
	w := given(t)
	w.reject(policy.CodeRunNotFound, "bob", t0, "", events.RunStartedV1{RunID: "r1", Resume: "must"})
	// allow on a missing run starts it.
	if name := startedName(t, w.must("bob", t0, "", events.RunStartedV1{RunID: "r1", Name: "a", Resume: "allow"})); name != "a" {
		t.Fatalf("name %q", name)
	}
	w.must("bob", t0, "r1", (rows(0, 9)))
	w.must("bob", t0, "r1", events.RunFinishedV1{ExitCode: 1})
	if st := w.run("r1").State; st != events.StateFailed {
		t.Fatalf("state %q, want failed", st)
	}
	w.reject(policy.CodeRunFinished, "bob", t0, "r1", (rows(10, 10)))
	w.reject(policy.CodeRunExists, "bob", t0, "", events.RunStartedV1{RunID: "r1", Resume: "never"})
	w.reject(policy.CodeRunNotYours, "dave", t0, "", events.RunStartedV1{RunID: "r1", Resume: "must"})
	// must on an existing run resumes it: running again, config merged, steps continue.
	d := w.must("bob", t0, "", events.RunStartedV1{RunID: "r1", Resume: "must", Config: json.RawMessage(`{"epochs":20}`)})
	if _, ok := d.Events[0].Payload.(events.RunResumedV1); !ok || d.Events[0].Run != "r1" {
		t.Fatalf("resume gives %+v", d.Events)
	}
	if r := w.run("r1"); r.State != events.StateRunning || r.LastStep != 9 {
		t.Fatalf("after resume: %+v", r)
	}
	d = w.must("bob", t0, "r1", (rows(5, 12)))
	if d.Dropped != 5 || d.Events[0].Payload.(events.MetricsLoggedV2).Len() != 3 {
		t.Fatalf("rows at or below the last step must be dropped: %+v", d)
	}
	// An Admin may resume another member's run.
	w.must("alice", t0, "", events.RunStartedV1{RunID: "r1", Resume: "allow"})
}

func TestFinishStates(t *testing.T) {
	for _, c := range []struct {
		name string
		pl   events.RunFinishedV1
		want string
	}{
		{"exit 0", events.RunFinishedV1{ExitCode: 0}, events.StateFinished},
		{"exit 1", events.RunFinishedV1{ExitCode: 1}, events.StateFailed},
		{"killed", events.RunFinishedV1{State: events.StateKilled, ExitCode: 137}, events.StateKilled},
		{"explicit failed", events.RunFinishedV1{State: events.StateFailed}, events.StateFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := given(t)
			w.start("bob", "r", "")
			w.must("bob", t0, "r", c.pl)
			if st := w.run("r").State; st != c.want {
				t.Fatalf("state %q, want %q", st, c.want)
			}
			w.reject(policy.CodeRunFinished, "bob", t0, "r", events.RunFinishedV1{})
			w.reject(policy.CodeRunFinished, "bob", t0, "r", events.RunHeartbeatRecordedV1{})
		})
	}
	w := given(t)
	w.start("bob", "r", "")
	w.reject(policy.CodeInvalid, "bob", t0, "r", events.RunFinishedV1{State: "exploded"})
	w.reject(policy.CodeRunNotYours, "dave", t0, "r", events.RunFinishedV1{})
	w.reject(policy.CodeRunNotFound, "bob", t0, "nope", events.RunFinishedV1{})
}

func TestCrashDetection(t *testing.T) {
	w := given(t)
	w.s.CrashAfter = time.Minute
	w.start("bob", "r", "")
	w.must("bob", t0.Add(10*time.Second), "r", (rows(0, 0)))
	last := t0.Add(10 * time.Second)

	// Only the system actor may crash a run, and only once it is quiet.
	w.reject(policy.CodeForbidden, "bob", last.Add(time.Hour), "r", events.RunCrashedV1{})
	w.reject(policy.CodeForbidden, "alice", last.Add(time.Hour), "r", events.RunCrashedV1{})
	w.reject(policy.CodeRunAlive, policy.SystemActor, last.Add(59*time.Second), "r", events.RunCrashedV1{})
	w.reject(policy.CodeForbidden, policy.SystemActor, last.Add(time.Hour), "r", events.RunFinishedV1{})
	if stale := policy.StaleRuns(w.s, last.Add(59*time.Second)); len(stale) != 0 {
		t.Fatalf("stale runs before the timeout: %+v", stale)
	}
	if stale := policy.StaleRuns(w.s, last.Add(time.Minute)); len(stale) != 1 || stale[0].Run != "r" {
		t.Fatalf("stale runs after the timeout: %+v", stale)
	}
	d := w.must(policy.SystemActor, last.Add(time.Minute), "r", events.RunCrashedV1{LastSeen: 1})
	if pl := d.Events[0].Payload.(events.RunCrashedV1); pl.LastSeen != float64(last.Unix()) {
		t.Fatalf("last_seen %v, want the run's last activity %v (from the log, not the proposal)", pl.LastSeen, last.Unix())
	}
	if st := w.run("r").State; st != events.StateCrashed {
		t.Fatalf("state %q, want crashed", st)
	}
	// A second sweeper's proposal changes nothing.
	if d := w.must(policy.SystemActor, last.Add(2*time.Minute), "r", events.RunCrashedV1{}); len(d.Events) != 0 {
		t.Fatalf("crashing a crashed run: %+v", d.Events)
	}
	// A crashed run that logs again is running.
	w.must("bob", last.Add(3*time.Minute), "r", (rows(1, 1)))
	if st := w.run("r").State; st != events.StateRunning {
		t.Fatalf("state after logging %q, want running", st)
	}
	// ... and it can crash again, then finish (a crashed run may still report its end).
	w.must(policy.SystemActor, last.Add(5*time.Minute), "r", events.RunCrashedV1{})
	w.must("bob", last.Add(6*time.Minute), "r", events.RunFinishedV1{State: events.StateKilled})
	if st := w.run("r").State; st != events.StateKilled {
		t.Fatalf("state %q, want killed", st)
	}
	if d := w.must(policy.SystemActor, last.Add(time.Hour), "r", events.RunCrashedV1{}); len(d.Events) != 0 {
		t.Fatal("a killed run was marked crashed")
	}
	w.reject(policy.CodeRunNotFound, policy.SystemActor, last.Add(time.Hour), "nope", events.RunCrashedV1{})
}

func TestHeartbeats(t *testing.T) {
	w := given(t)
	w.s.CrashAfter = 4 * time.Minute // heartbeats recorded after a quiet minute
	w.start("bob", "r", "")
	if d := w.must("bob", t0.Add(30*time.Second), "r", events.RunHeartbeatRecordedV1{}); len(d.Events) != 0 {
		t.Fatal("a heartbeat 30s after activity was recorded")
	}
	if d := w.must("bob", t0.Add(time.Minute), "r", events.RunHeartbeatRecordedV1{}); len(d.Events) != 1 {
		t.Fatal("a heartbeat after a quiet minute was not recorded")
	}
	if got := w.run("r").LastActivity; !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("last activity %v", got)
	}
	// The heartbeat keeps the run alive past the original timeout.
	w.reject(policy.CodeRunAlive, policy.SystemActor, t0.Add(4*time.Minute), "r", events.RunCrashedV1{})
	w.must(policy.SystemActor, t0.Add(5*time.Minute), "r", events.RunCrashedV1{})
	// A crashed run that heartbeats is running again.
	if d := w.must("bob", t0.Add(5*time.Minute+time.Second), "r", events.RunHeartbeatRecordedV1{}); len(d.Events) != 1 {
		t.Fatal("the heartbeat of a crashed run was not recorded")
	}
	if st := w.run("r").State; st != events.StateRunning {
		t.Fatalf("state %q, want running", st)
	}
	w.reject(policy.CodeForbidden, "carol", t0, "r", events.RunHeartbeatRecordedV1{})
}

// TestLivenessIsRebuiltFromTheLog: a state rebuilt from the accepted events
// decides crashes exactly like the live one.
func TestLivenessIsRebuiltFromTheLog(t *testing.T) {
	w := given(t)
	var log []events.Event
	record := func(d policy.Decision) { log = append(log, d.Events...) }
	record(w.start("bob", "r", ""))
	record(w.must("bob", t0.Add(time.Minute), "r", (rows(0, 3))))
	fresh := given(t)
	for _, e := range log {
		fresh.apply(e)
	}
	if a, b := w.run("r").LastActivity, fresh.run("r").LastActivity; !a.Equal(b) || !a.Equal(t0.Add(time.Minute)) {
		t.Fatalf("last activity live %v, rebuilt %v", a, b)
	}
}

func TestBadRunInputChangesNothing(t *testing.T) {
	w := given(t)
	deep := strings.Repeat(`{"a":`, 17) + "1" + strings.Repeat("}", 17)
	big := `{"x":"` + strings.Repeat("y", events.MaxConfigBytes) + `"}`
	manyTags := make([]string, events.MaxTags+1)
	for i := range manyTags {
		manyTags[i] = fmt.Sprint("t", i)
	}
	for name, pl := range map[string]events.RunStartedV1{
		"config too deep":   {Config: json.RawMessage(deep)},
		"config too large":  {Config: json.RawMessage(big)},
		"config not object": {Config: json.RawMessage(`[1]`)},
		"too many tags":     {Tags: manyTags},
		"tag too long":      {Tags: []string{strings.Repeat("t", events.MaxTagLen+1)}},
		"empty tag":         {Tags: []string{""}},
		"invalid id":        {RunID: "bad id"},
		"notes too long":    {Notes: strings.Repeat("n", events.MaxNotesLen+1)},
	} {
		t.Run(name, func(t *testing.T) {
			w.reject(policy.CodeInvalid, "bob", t0, "", pl)
		})
	}
	w.start("bob", "r", "")
	w.reject(policy.CodeInvalid, "bob", t0, "r", events.RunUpdatedV1{Config: json.RawMessage(deep)})
	w.reject(policy.CodeInvalid, "bob", t0, "r", events.RunUpdatedV1{AddTags: manyTags})
	w.reject(policy.CodeRunNotFound, "bob", t0, "missing", events.RunUpdatedV1{Notes: ptr("x")})
}

func ptr[T any](v T) *T { return &v }

func rows(from, to int64) events.MetricsLoggedV2 {
	var out []events.Row
	for s := from; s <= to; s++ {
		out = append(out, events.Row{Step: s, Time: float64(s), Values: map[string]events.Value{"loss": events.Value(s)}})
	}
	return events.MustRows(out)
}
