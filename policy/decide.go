package policy

import (
	"fmt"

	"github.com/logbook/logbook/events"
)

// Code is a stable, machine-readable rejection reason.
type Code string

// Rejection codes. They never change meaning; clients may branch on them.
const (
	CodeInvalid          Code = "invalid"
	CodeUnauthenticated  Code = "unauthenticated"
	CodeForbidden        Code = "forbidden"
	CodeUnknownUser      Code = "unknown_user"
	CodeUnknownEntity    Code = "unknown_entity"
	CodeEntityExists     Code = "entity_exists"
	CodeEmailTaken       Code = "email_taken"
	CodeProjectExists    Code = "project_exists"
	CodeProjectNotFound  Code = "project_not_found"
	CodeAlreadyMember    Code = "already_member"
	CodeNotMember        Code = "not_member"
	CodeInviteNotFound   Code = "invite_not_found"
	CodeLastAdmin        Code = "last_admin"
	CodeRunNotFound      Code = "run_not_found"
	CodeRunExists        Code = "run_exists"
	CodeRunNotYours      Code = "run_not_yours"
	CodeRunFinished      Code = "run_finished"
	CodeKeyNotFound      Code = "key_not_found"
	CodeUnsupportedEvent Code = "unsupported_event"
	// CodeRunAlive refuses a crash for a run that showed activity within
	// the crash timeout.
	CodeRunAlive Code = "run_alive"
	// Artifacts.
	CodeArtifactNotFound     Code = "artifact_not_found"
	CodeArtifactExists       Code = "artifact_exists"
	CodeArtifactTypeMismatch Code = "artifact_type_mismatch"
	CodeArtifactHasAliases   Code = "artifact_has_aliases"
	// The log (policy/quarantine.go).
	CodeAlreadyQuarantined Code = "already_quarantined"
	// CodeEventUnreadable refuses a proposal on an aggregate whose log
	// holds an event this decider cannot read and no one has quarantined:
	// its state there may be wrong.
	CodeEventUnreadable Code = "event_unreadable"
)

// Rejection says why a proposal was refused: a stable code and a message a
// person can act on.
type Rejection struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (r *Rejection) Error() string { return string(r.Code) + ": " + r.Message }

func reject(code Code, format string, args ...any) Decision {
	return Decision{Rejection: &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// Decision is the outcome of a proposal: the events to append, or a
// rejection. An accepted proposal may produce no events (a re-delivered
// proposal, or metric rows that were all logged before).
type Decision struct {
	Events    []events.Event
	Rejection *Rejection
	// Duplicate is set when the proposal had already been decided; Run is
	// then the run it concerned, if any.
	Duplicate bool
	Run       string
	// Dropped counts metric rows dropped because their step was not after
	// the run's last logged step.
	Dropped int
}

// Decide decides a proposal against the state. The proposal's Actor must
// come from a verified credential. Decide does not change the state: apply
// the decision's events to advance it.
func Decide(s *State, p events.Event) Decision {
	if p.Actor == "" {
		return reject(CodeUnauthenticated, "the proposal has no authenticated actor")
	}
	if run, done := s.Decided(p.ID); done {
		if by := s.decidedBy[p.ID]; by != p.Actor {
			return reject(CodeInvalid, "proposal id %s was already used; send a new Idempotency-Key", p.ID)
		}
		return Decision{Duplicate: true, Run: run}
	}
	var d Decision
	if p.Actor == SystemActor {
		d = decideSystem(s, p)
	} else {
		actor, ok := s.Users[p.Actor]
		if !ok {
			return reject(CodeUnauthenticated, "user %q does not exist", p.Actor)
		}
		d = decide(s, actor, p)
	}
	for i := range d.Events {
		e := &d.Events[i]
		e.ID = events.DerivedID(p.ID, i)
		e.Type = e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		e.Actor = p.Actor
		e.Time = p.Time
		e.Cause = p.ID
	}
	return d
}

// decide decides a user's proposal: it looks up the rule of the proposal's
// type, passes the rule's gate (the project, then the run) and applies it.
func decide(s *State, actor *User, p events.Event) Decision {
	if p.Payload == nil {
		return reject(CodeInvalid, "the proposal has no payload")
	}
	if act, _ := ActionOf(p.Payload.EventType()); act == Derived || act == "" {
		return reject(CodeUnsupportedEvent, "%s cannot be proposed; the policy produces it", p.Payload.EventType())
	}
	r := ruleOf(p.Payload)
	pr := &proposal{s: s, actor: actor, p: p}
	if r.gate >= projectGate {
		if d, ok := pr.enterProject(); !ok {
			return d
		}
	}
	if r.gate >= runGate {
		if d, ok := pr.enterRun(); !ok {
			return d
		}
	}
	return r.decide(pr)
}

// rules is the one table of what users may propose: a rule per proposal
// type, with the gate it needs passed first. Types only the policy produces
// (Derived in ProposalAction) have none; TestRulesAgreeWithPermissions
// keeps the two tables in step.
var rules = map[events.Type]rule{
	// Users, keys, teams and projects: each rule checks its own scope.
	events.UserCreated:      on(noGate, decideUserCreated),
	events.KeyCreated:       on(noGate, decideKeyCreated),
	events.KeyRevoked:       on(noGate, decideKeyRevoked),
	events.TeamCreated:      on(noGate, decideTeamCreated),
	events.TeamMemberJoined: on(noGate, decideTeamMemberJoined),
	events.ProjectCreated:   on(noGate, decideProjectCreated),

	// Inside an existing project the actor has a role in.
	events.MemberInvited:  on(projectGate, decideInvite),
	events.InviteRevoked:  on(projectGate, decideInviteRevoked),
	events.RoleChanged:    on(projectGate, decideRoleChanged),
	events.MemberRemoved:  on(projectGate, decideMemberRemoved),
	events.ProjectDeleted: on(projectGate, decideProjectDeleted),
	events.RunStarted:     on(projectGate, decideRunStarted),

	// Writes to an existing run the actor may write to.
	events.MetricsLogged:        on(runGate, decideMetrics),
	events.SummaryUpdated:       on(runGate, decideSummary),
	events.RunFinished:          on(runGate, decideRunFinished),
	events.RunCrashed:           on(runGate, decideRunCrashed),
	events.RunHeartbeatRecorded: on(runGate, decideHeartbeat),
	events.RunUpdated:           on(runGate, decideRunUpdated),
	events.RunDeleted:           on(runGate, decideRunDeleted),
	events.RunLinesWritten:      on(runGate, decideLines),
	events.RunStreamReceived:    on(runGate, decideStreamReceived),

	// Artifacts (policy/artifacts.go).
	events.ArtifactCreated:      on(projectGate, decideArtifactCreated),
	events.ArtifactCommitted:    on(projectGate, decideArtifactCommitted),
	events.ArtifactAliasesAdded: on(projectGate, decideArtifactAliases),
	events.ArtifactDeleted:      on(projectGate, decideArtifactDeleted),
	events.ArtifactUsed:         on(runGate, decideArtifactUsed),
	events.ArtifactLinked:       on(projectGate, decideArtifactLinked),

	// The log itself (policy/quarantine.go).
	events.EventQuarantined: on(noGate, decideEventQuarantined),
}

// gate is what must hold before a rule runs. Gates are ordered: runGate
// passes projectGate first.
type gate int

const (
	noGate      gate = iota // nothing: entity-level rules check their scope themselves
	projectGate             // the project exists and the actor has a role in it
	runGate                 // and the run exists and the actor may write to it
)

// rule decides one proposal type once its gate has passed.
type rule struct {
	gate   gate
	typ    events.Type                 // the event type of the payload the rule takes
	takes  func(events.Payload) bool   // whether the payload has the rule's Go type
	decide func(pr *proposal) Decision // called only if takes
}

// on makes the rule of the payload type P.
func on[P events.Payload](g gate, decide func(pr *proposal, pl P) Decision) rule {
	var zero P
	return rule{
		gate:   g,
		typ:    zero.EventType(),
		takes:  func(pl events.Payload) bool { _, ok := pl.(P); return ok },
		decide: func(pr *proposal) Decision { return decide(pr, pr.p.Payload.(P)) },
	}
}

// unsupported answers a payload no rule takes (of another Go type than
// the registered payload of its event type), after the run gate.
var unsupported = rule{gate: runGate, decide: func(pr *proposal) Decision {
	return reject(CodeUnsupportedEvent, "%s cannot be proposed", pr.p.Type)
}}

func ruleOf(pl events.Payload) rule {
	if r, ok := rules[pl.EventType()]; ok && r.takes(pl) {
		return r
	}
	return unsupported
}

// proposal is a user's proposal being decided, with what its gates found.
type proposal struct {
	s     *State
	actor *User
	p     events.Event
	proj  *Project    // set by the project gate
	role  events.Role // the actor's role in proj
	run   *Run        // set by the run gate
}

// enterProject is the project gate.
func (pr *proposal) enterProject() (Decision, bool) {
	proj, ok := pr.s.Project(pr.p.Entity, pr.p.Project)
	role := pr.s.Role(pr.actor.Username, proj)
	if !ok || role == "" {
		return reject(CodeProjectNotFound, "project %s/%s does not exist or you are not a member of it", pr.p.Entity, pr.p.Project), false
	}
	pr.proj, pr.role = proj, role
	return Decision{}, true
}

// enterRun is the run gate: the run is live, and it is the actor's own run
// (WriteOwnRun) or the actor may write to any run (WriteAnyRun).
func (pr *proposal) enterRun() (Decision, bool) {
	run := pr.proj.Runs[pr.p.Run]
	if run == nil || run.Deleted {
		return reject(CodeRunNotFound, "run %q does not exist in %s/%s", pr.p.Run, pr.p.Entity, pr.p.Project), false
	}
	if run.Owner == pr.actor.Username {
		if d, ok := need(pr.role, WriteOwnRun); !ok {
			return d, false
		}
	} else if !Allowed(pr.role, WriteAnyRun) {
		if Allowed(pr.role, WriteOwnRun) {
			return reject(CodeRunNotYours, "run %q belongs to %q; a %s may only write to their own runs", pr.p.Run, run.Owner, pr.role), false
		}
		return forbidden(pr.role, WriteAnyRun), false
	}
	pr.run = run
	return Decision{}, true
}

// may reports whether the actor's role on a scope other than a project
// allows a.
func (pr *proposal) may(scope Scope, target string, a Action) bool {
	return Allowed(pr.s.RoleOn(pr.actor, scope, target), a)
}

// in returns an event of the proposal's project and run carrying pl.
func (pr *proposal) in(pl events.Payload) events.Event {
	return events.Event{Entity: pr.p.Entity, Project: pr.p.Project, Run: pr.p.Run, Payload: pl}
}

func accept(evs ...events.Event) Decision { return Decision{Events: evs} }

// need returns a rejection unless role allows a.
func need(role events.Role, a Action) (Decision, bool) {
	if Allowed(role, a) {
		return Decision{}, true
	}
	return forbidden(role, a), false
}

func forbidden(role events.Role, a Action) Decision {
	return reject(CodeForbidden, "a %s may not %s", roleName(role), a)
}

func roleName(r events.Role) string {
	switch r {
	case events.RoleAdmin:
		return "Admin"
	case events.RoleMember:
		return "Member"
	case events.RoleViewer:
		return "Viewer"
	}
	return "non-member"
}
