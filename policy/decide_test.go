package policy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// given folds events (as if accepted in this order) into a fresh state.
func given(evs ...events.Event) *State {
	s := NewState()
	for i, e := range evs {
		if e.ID == "" {
			e.ID = events.DerivedID("01JDX0000000000000000000G0", i+1)
		}
		e.Type = e.Payload.EventType()
		e.Time = t0
		s.Apply(uint64(i+1), e)
	}
	return s
}

func user(name, email string) events.Event {
	return events.Event{Entity: name, Actor: "admin", Payload: events.UserCreatedV1{Username: name, Email: email}}
}

func in(actor string, pl events.Payload) events.Event {
	return events.Event{Entity: "team", Project: "proj", Actor: actor, Payload: pl}
}

func onRun(actor, run string, pl events.Payload) events.Event {
	e := in(actor, pl)
	e.Run = run
	return e
}

// world: a site admin, a team with alice (member) and tom (team admin),
// project team/proj with alice Admin, bob Member, carol Viewer, and bob's
// running run r1 at step 4.
func world() []events.Event {
	return []events.Event{
		{Entity: "admin", Actor: "admin", Payload: events.UserCreatedV1{Username: "admin", SiteAdmin: true}},
		user("alice", "alice@example.com"), user("bob", "bob@example.com"), user("carol", "carol@example.com"),
		user("mallory", ""), user("tom", ""),
		{Entity: "team", Actor: "admin", Payload: events.TeamCreatedV1{Name: "team"}},
		{Entity: "team", Actor: "admin", Payload: events.TeamMemberJoinedV1{Username: "alice", Role: events.TeamMember}},
		{Entity: "team", Actor: "admin", Payload: events.TeamMemberJoinedV1{Username: "tom", Role: events.TeamAdmin}},
		in("alice", events.ProjectCreatedV1{Name: "proj"}),
		in("alice", events.MemberJoinedV1{Username: "bob", Role: events.RoleMember}),
		in("alice", events.MemberJoinedV1{Username: "carol", Role: events.RoleViewer}),
		onRun("bob", "r1", events.RunStartedV1{RunID: "r1", Name: "my-run"}),
		onRun("bob", "r1", events.MustRows([]events.Row{{Step: 4, Values: map[string]events.Value{"loss": 1}}})),
	}
}

func rows(steps ...int64) events.MetricsLoggedV2 {
	var out []events.Row
	for _, s := range steps {
		out = append(out, events.Row{Step: s, Values: map[string]events.Value{"loss": events.Value(s)}})
	}
	return events.MustRows(out)
}

func manyValues(n int) map[string]events.Value {
	m := make(map[string]events.Value, n)
	for i := range n {
		m["m"+strconv.Itoa(i)] = 1
	}
	return m
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		given []events.Event
		when  events.Event
		// then: the rejection code, or "" and the event types expected.
		code  Code
		types []events.Type
		check func(t *testing.T, d Decision)
	}{
		{name: "member starts a run", when: in("bob", events.RunStartedV1{Name: "fresh"}), types: []events.Type{events.RunStarted}},
		{name: "viewer may not start a run", when: in("carol", events.RunStartedV1{Name: "x"}), code: CodeForbidden,
			check: func(t *testing.T, d Decision) {
				if !strings.Contains(d.Rejection.Message, "Viewer") {
					t.Errorf("message %q does not name the Viewer role", d.Rejection.Message)
				}
			}},
		{name: "non-member sees no project", when: in("mallory", events.RunStartedV1{Name: "x"}), code: CodeProjectNotFound},
		{name: "unknown project", when: events.Event{Entity: "team", Project: "nope", Actor: "alice", Payload: events.RunStartedV1{}}, code: CodeProjectNotFound},
		{name: "second my-run becomes my-run-2", when: in("alice", events.RunStartedV1{Name: "my-run"}), types: []events.Type{events.RunStarted},
			check: func(t *testing.T, d Decision) {
				if n := d.Events[0].Payload.(events.RunStartedV1).Name; n != "my-run-2" {
					t.Errorf("name = %q, want my-run-2", n)
				}
			}},
		{name: "third my-run becomes my-run-3", given: []events.Event{onRun("alice", "r2", events.RunStartedV1{RunID: "r2", Name: "my-run-2"})},
			when: in("alice", events.RunStartedV1{Name: "my-run"}), types: []events.Type{events.RunStarted},
			check: func(t *testing.T, d Decision) {
				if n := d.Events[0].Payload.(events.RunStartedV1).Name; n != "my-run-3" {
					t.Errorf("name = %q, want my-run-3", n)
				}
			}},
		{name: "no name gets a readable default", when: in("bob", events.RunStartedV1{}), types: []events.Type{events.RunStarted},
			check: func(t *testing.T, d Decision) {
				if n := d.Events[0].Payload.(events.RunStartedV1).Name; strings.Count(n, "-") != 2 {
					t.Errorf("default name %q is not adjective-noun-n", n)
				}
			}},
		{name: "existing run id without resume", when: in("bob", events.RunStartedV1{RunID: "r1"}), code: CodeRunExists},
		{name: "resume=allow on own run", when: in("bob", events.RunStartedV1{RunID: "r1", Resume: "allow"}), types: []events.Type{events.RunResumed}},
		{name: "resume=must on a missing run", when: in("bob", events.RunStartedV1{RunID: "nope", Resume: "must"}), code: CodeRunNotFound},
		{name: "invalid run id", when: in("bob", events.RunStartedV1{RunID: "a/b"}), code: CodeInvalid},
		{name: "config must be an object", when: in("bob", events.RunStartedV1{Config: json.RawMessage(`[1]`)}), code: CodeInvalid},
		{name: "config too deep", when: in("bob", events.RunStartedV1{Config: json.RawMessage(strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20))}), code: CodeInvalid},
		{name: "too many tags", when: in("bob", events.RunStartedV1{Tags: make([]string, 101)}), code: CodeInvalid},
		{name: "owner logs", when: onRun("bob", "r1", rows(5, 6)), types: []events.Type{events.MetricsLogged}},
		{name: "rows at or below the last step are dropped", when: onRun("bob", "r1", rows(3, 4, 5)), types: []events.Type{events.MetricsLogged},
			check: func(t *testing.T, d Decision) {
				if got := d.Events[0].Payload.(events.MetricsLoggedV2).Rows(); len(got) != 1 || got[0].Step != 5 || d.Dropped != 2 {
					t.Errorf("kept %+v, dropped %d; want step 5 kept, 2 dropped", got, d.Dropped)
				}
			}},
		{name: "a re-sent batch is accepted with nothing new", when: onRun("bob", "r1", rows(4)), types: nil},
		{name: "a batch after the last step is appended as it came", when: onRun("bob", "r1", rows(5, 6)), types: []events.Type{events.MetricsLogged},
			check: func(t *testing.T, d Decision) {
				if got, want := d.Events[0].Payload.(events.MetricsLoggedV2).Columns(), rows(5, 6).Columns(); !bytes.Equal(got, want) {
					t.Errorf("columns %x, want %x", got, want)
				}
			}},
		{name: "steps must be in range", when: onRun("bob", "r1", rows(7, 1<<54)), code: CodeInvalid},
		{name: "a row without values", when: onRun("bob", "r1", events.MustRows([]events.Row{{Step: 9, Values: map[string]events.Value{"x": 1}}, {Step: 10}})), code: CodeInvalid},
		{name: "too many metrics in a row", when: onRun("bob", "r1", events.MustRows([]events.Row{{Step: 9, Values: manyValues(events.MaxMetricsPerRow + 1)}})), code: CodeInvalid},
		{name: "many metrics, none too many in a row", when: onRun("bob", "r1", events.MustRows([]events.Row{{Step: 9, Values: manyValues(events.MaxMetricsPerRow)}, {Step: 10, Values: map[string]events.Value{"other": 1}}})),
			types: []events.Type{events.MetricsLogged}},
		{name: "reserved metric key", when: onRun("bob", "r1", events.MustRows([]events.Row{{Step: 9, Values: map[string]events.Value{"_step": 1}}})), code: CodeInvalid},
		{name: "admin may log to any run", when: onRun("alice", "r1", rows(9)), types: []events.Type{events.MetricsLogged}},
		{name: "another member's run is refused", given: []events.Event{in("alice", events.MemberJoinedV1{Username: "dave", Role: events.RoleMember}), user("dave", "")},
			when: onRun("dave", "r1", rows(9)), code: CodeRunNotYours},
		{name: "viewer may not log", when: onRun("carol", "r1", rows(9)), code: CodeForbidden},
		{name: "unknown run", when: onRun("bob", "nope", rows(1)), code: CodeRunNotFound},
		{name: "finish: exit 0 is finished", when: onRun("bob", "r1", events.RunFinishedV1{}), types: []events.Type{events.RunFinished},
			check: func(t *testing.T, d Decision) {
				if s := d.Events[0].Payload.(events.RunFinishedV1).State; s != events.StateFinished {
					t.Errorf("state %q", s)
				}
			}},
		{name: "finish: exit 3 is failed", when: onRun("bob", "r1", events.RunFinishedV1{ExitCode: 3}), types: []events.Type{events.RunFinished},
			check: func(t *testing.T, d Decision) {
				if s := d.Events[0].Payload.(events.RunFinishedV1).State; s != events.StateFailed {
					t.Errorf("state %q", s)
				}
			}},
		{name: "logging to a finished run", given: []events.Event{onRun("bob", "r1", events.RunFinishedV1{State: events.StateFinished})},
			when: onRun("bob", "r1", rows(9)), code: CodeRunFinished},
		{name: "admin invites by username", when: in("alice", events.MemberInvitedV1{Username: "mallory", Role: events.RoleViewer}),
			types: []events.Type{events.MemberInvited, events.MemberJoined}},
		{name: "invite by email of a known user joins at once", given: []events.Event{in("alice", events.MemberRemovedV1{Username: "carol"})},
			when: in("alice", events.MemberInvitedV1{Email: "carol@example.com", Role: events.RoleViewer}), types: []events.Type{events.MemberInvited, events.MemberJoined}},
		{name: "invite by email of no user is pending", when: in("alice", events.MemberInvitedV1{Email: "new@example.com"}), types: []events.Type{events.MemberInvited}},
		{name: "inviting a member is an error", when: in("alice", events.MemberInvitedV1{Username: "bob"}), code: CodeAlreadyMember},
		{name: "member may not invite", when: in("bob", events.MemberInvitedV1{Username: "mallory"}), code: CodeForbidden},
		{name: "team admin acts as Admin", when: in("tom", events.MemberInvitedV1{Username: "mallory"}), types: []events.Type{events.MemberInvited, events.MemberJoined}},
		{name: "last admin cannot be demoted", when: in("alice", events.RoleChangedV1{Username: "alice", Role: events.RoleMember}), code: CodeLastAdmin},
		{name: "last admin cannot be removed", when: in("tom", events.MemberRemovedV1{Username: "alice"}), code: CodeLastAdmin},
		{name: "last admin cannot leave", when: in("alice", events.MemberRemovedV1{Username: "alice"}), code: CodeLastAdmin},
		{name: "a second admin lets the first leave", given: []events.Event{in("alice", events.RoleChangedV1{Username: "bob", Role: events.RoleAdmin})},
			when: in("alice", events.MemberRemovedV1{Username: "alice"}), types: []events.Type{events.MemberRemoved}},
		{name: "viewer may leave", when: in("carol", events.MemberRemovedV1{Username: "carol"}), types: []events.Type{events.MemberRemoved}},
		{name: "member may not delete the project", when: in("bob", events.ProjectDeletedV1{}), code: CodeForbidden},
		{name: "admin deletes the project", when: in("alice", events.ProjectDeletedV1{}), types: []events.Type{events.ProjectDeleted}},
		{name: "team member creates a project", when: events.Event{Entity: "team", Project: "p2", Actor: "alice", Payload: events.ProjectCreatedV1{}}, types: []events.Type{events.ProjectCreated}},
		{name: "non-team-member may not create a team project", when: events.Event{Entity: "team", Project: "p2", Actor: "bob", Payload: events.ProjectCreatedV1{}}, code: CodeForbidden},
		{name: "project name taken", when: events.Event{Entity: "team", Project: "proj", Actor: "alice", Payload: events.ProjectCreatedV1{}}, code: CodeProjectExists},
		{name: "user creates a project in their own entity", when: events.Event{Entity: "bob", Project: "mine", Actor: "bob", Payload: events.ProjectCreatedV1{}}, types: []events.Type{events.ProjectCreated}},
		{name: "nobody creates in another user's entity", when: events.Event{Entity: "bob", Project: "mine", Actor: "alice", Payload: events.ProjectCreatedV1{}}, code: CodeForbidden},
		{name: "unknown entity", when: events.Event{Entity: "ghost", Project: "p", Actor: "alice", Payload: events.ProjectCreatedV1{}}, code: CodeUnknownEntity},
		{name: "only site admins create users", when: events.Event{Entity: "zed", Actor: "alice", Payload: events.UserCreatedV1{Username: "zed"}}, code: CodeForbidden},
		{name: "user with a pending invite joins on creation", given: []events.Event{in("alice", events.MemberInvitedV1{Email: "zed@example.com", Role: events.RoleViewer})},
			when:  events.Event{Entity: "zed", Actor: "admin", Payload: events.UserCreatedV1{Username: "zed", Email: "zed@example.com"}},
			types: []events.Type{events.UserCreated, events.MemberJoined}},
		{name: "username taken by a team", when: events.Event{Entity: "team", Actor: "admin", Payload: events.UserCreatedV1{Username: "team"}}, code: CodeEntityExists},
		{name: "unauthenticated", when: events.Event{Entity: "team", Project: "proj", Payload: events.RunStartedV1{}}, code: CodeUnauthenticated},
		{name: "unknown actor", when: in("ghost", events.RunStartedV1{}), code: CodeUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := given(append(world(), tc.given...)...)
			p := tc.when
			p.ID = "01JDX0000000000000000000W0"
			p.Time = t0
			d := Decide(s, p)
			if tc.code != "" {
				if d.Rejection == nil || d.Rejection.Code != tc.code {
					t.Fatalf("decision %+v, want rejection %s", d, tc.code)
				}
				if d.Rejection.Message == "" {
					t.Error("rejection without a message")
				}
				return
			}
			if d.Rejection != nil {
				t.Fatalf("rejected: %v", d.Rejection)
			}
			var got []events.Type
			for _, e := range d.Events {
				got = append(got, e.Type)
				if e.Actor != p.Actor || e.Cause != p.ID {
					t.Errorf("event %s has actor %q cause %q", e.Type, e.Actor, e.Cause)
				}
			}
			if strings.Join(typeStrings(got), ",") != strings.Join(typeStrings(tc.types), ",") {
				t.Fatalf("events %v, want %v", got, tc.types)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func typeStrings(ts []events.Type) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// A proposal that already produced events is answered as a duplicate, with
// the same run, and produces nothing new: redelivery after a crash is safe.
func TestDecideIsIdempotentPerProposal(t *testing.T) {
	s := given(world()...)
	p := in("bob", events.RunStartedV1{Name: "once"})
	p.ID, p.Time = "01JDX0000000000000000000W1", t0
	d := Decide(s, p)
	if d.Rejection != nil || len(d.Events) != 1 {
		t.Fatalf("first decision: %+v", d)
	}
	for i, e := range d.Events {
		s.Apply(uint64(100+i), e)
	}
	again := Decide(s, p)
	if !again.Duplicate || len(again.Events) != 0 || again.Run != d.Events[0].Run {
		t.Fatalf("re-decided: %+v, want a duplicate of run %s", again, d.Events[0].Run)
	}
}

// Event ids are derived from the proposal id: the same proposal decided on
// a rebuilt state gives the same ids (and Nats-Msg-Ids).
func TestDecideIsDeterministic(t *testing.T) {
	p := in("alice", events.MemberInvitedV1{Username: "mallory"})
	p.ID, p.Time = "01JDX0000000000000000000W2", t0
	a := Decide(given(world()...), p)
	b := Decide(given(world()...), p)
	if len(a.Events) != 2 || a.Events[0].ID != b.Events[0].ID || a.Events[1].ID != b.Events[1].ID || a.Events[0].ID == a.Events[1].ID {
		t.Fatalf("ids not deterministic and distinct: %v / %v", a.Events, b.Events)
	}
}
