package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"strings"

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

func decide(s *State, actor *User, p events.Event) Decision {
	if p.Payload == nil {
		return reject(CodeInvalid, "the proposal has no payload")
	}
	if act, _ := ActionOf(p.Payload.EventType()); act == Derived || act == "" {
		return reject(CodeUnsupportedEvent, "%s cannot be proposed; the policy produces it", p.Payload.EventType())
	}
	switch pl := p.Payload.(type) {
	case events.UserCreatedV1:
		return decideUserCreated(s, actor, pl)
	case events.KeyCreatedV1:
		return decideKeyCreated(s, actor, pl)
	case events.KeyRevokedV1:
		u := s.Users[pl.Username]
		if u == nil || !Allowed(s.RoleOn(actor, ScopeUser, u.Username), ManageKeys) {
			return reject(CodeKeyNotFound, "no key %q for user %q", pl.KeyID, pl.Username)
		}
		if _, ok := u.Keys[pl.KeyID]; !ok {
			return reject(CodeKeyNotFound, "no active key %q for user %q", pl.KeyID, pl.Username)
		}
		return accept(events.Event{Entity: u.Username, Payload: pl})
	case events.TeamCreatedV1:
		if !Allowed(s.RoleOn(actor, ScopeSite, ""), CreateTeam) {
			return reject(CodeForbidden, "only a site admin may create teams")
		}
		if err := events.ValidateEntity(pl.Name); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		if s.EntityExists(pl.Name) {
			return reject(CodeEntityExists, "the name %q is already taken by a user or team", pl.Name)
		}
		return accept(
			events.Event{Entity: pl.Name, Payload: pl},
			events.Event{Entity: pl.Name, Payload: events.TeamMemberJoinedV1{Username: actor.Username, Role: events.TeamAdmin}},
		)
	case events.TeamMemberJoinedV1:
		t := s.Teams[p.Entity]
		if t == nil {
			return reject(CodeUnknownEntity, "team %q does not exist", p.Entity)
		}
		if !Allowed(s.RoleOn(actor, ScopeEntity, p.Entity), ManageTeam) {
			return reject(CodeForbidden, "only a team admin of %q may add team members", p.Entity)
		}
		if !pl.Role.Valid() {
			return reject(CodeInvalid, "team role must be %q or %q", events.TeamAdmin, events.TeamMember)
		}
		if u, ok := s.Users[pl.Username]; !ok {
			return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
		} else if u.Service && (u.Owner != p.Entity || pl.Role != events.TeamMember) {
			return reject(CodeForbidden, "service account %q belongs to team %q as a member only", pl.Username, u.Owner)
		}
		return accept(events.Event{Entity: p.Entity, Payload: pl})
	case events.ProjectCreatedV1:
		return decideProjectCreated(s, actor, p, pl)
	}

	// Everything below happens inside an existing project.
	proj, ok := s.Project(p.Entity, p.Project)
	role := s.Role(actor.Username, proj)
	if !ok || role == "" {
		return reject(CodeProjectNotFound, "project %s/%s does not exist or you are not a member of it", p.Entity, p.Project)
	}
	in := func(pl events.Payload) events.Event {
		return events.Event{Entity: p.Entity, Project: p.Project, Run: p.Run, Payload: pl}
	}
	switch pl := p.Payload.(type) {
	case events.MemberInvitedV1:
		if d, ok := need(role, ManageMembers); !ok {
			return d
		}
		return decideInvite(s, proj, pl, in)
	case events.InviteRevokedV2:
		if d, ok := need(role, ManageMembers); !ok {
			return d
		}
		offered, ok := proj.Pending[strings.ToLower(pl.Email)]
		if !ok {
			return reject(CodeInviteNotFound, "there is no pending invite for %q", pl.Email)
		}
		return accept(in(events.InviteRevokedV2{Email: strings.ToLower(pl.Email), Role: offered}))
	case events.RoleChangedV1:
		if d, ok := need(role, ManageMembers); !ok {
			return d
		}
		if !pl.Role.Valid() {
			return reject(CodeInvalid, "role must be admin, member or viewer, not %q", pl.Role)
		}
		cur, ok := proj.Members[pl.Username]
		if !ok {
			return reject(CodeNotMember, "%q is not a member of %s/%s", pl.Username, p.Entity, p.Project)
		}
		if cur == pl.Role {
			return accept()
		}
		if cur == events.RoleAdmin && adminCount(proj) == 1 {
			return reject(CodeLastAdmin, "%q is the last admin of %s/%s; make another member admin first", pl.Username, p.Entity, p.Project)
		}
		return accept(in(pl))
	case events.MemberRemovedV1:
		act := ManageMembers
		if pl.Username == actor.Username {
			act = LeaveProject
		}
		if d, ok := need(role, act); !ok {
			return d
		}
		cur, ok := proj.Members[pl.Username]
		if !ok {
			return reject(CodeNotMember, "%q is not a member of %s/%s", pl.Username, p.Entity, p.Project)
		}
		if cur == events.RoleAdmin && adminCount(proj) == 1 {
			return reject(CodeLastAdmin, "%q is the last admin of %s/%s and cannot be removed or leave; make another member admin first", pl.Username, p.Entity, p.Project)
		}
		return accept(in(pl))
	case events.ProjectDeletedV1:
		if d, ok := need(role, DeleteProject); !ok {
			return d
		}
		return accept(in(pl))
	case events.RunStartedV1:
		return decideRunStarted(proj, actor, role, p, pl, in)
	}

	// Run events.
	run := proj.Runs[p.Run]
	if run == nil || run.Deleted {
		return reject(CodeRunNotFound, "run %q does not exist in %s/%s", p.Run, p.Entity, p.Project)
	}
	if run.Owner == actor.Username {
		if d, ok := need(role, WriteOwnRun); !ok {
			return d
		}
	} else if !Allowed(role, WriteAnyRun) {
		if Allowed(role, WriteOwnRun) {
			return reject(CodeRunNotYours, "run %q belongs to %q; a %s may only write to their own runs", p.Run, run.Owner, role)
		}
		return need2(role, WriteAnyRun)
	}
	switch pl := p.Payload.(type) {
	case events.MetricsLoggedV1:
		rows, dropped, err := newRows(pl.Rows, run.LastStep)
		if err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		if run.State != events.StateRunning && run.State != events.StateCrashed {
			return reject(CodeRunFinished, "run %q is %s; it no longer accepts metrics (resume it to log more)", p.Run, run.State)
		}
		if len(rows) == 0 {
			return Decision{Dropped: dropped}
		}
		d := accept(in(events.MetricsLoggedV1{Rows: rows}))
		d.Dropped = dropped
		return d
	case events.SummaryUpdatedV1:
		if len(pl.Values) == 0 {
			return reject(CodeInvalid, "a summary update needs at least one value")
		}
		for k := range pl.Values {
			if err := events.ValidateMetricKey(k); err != nil {
				return reject(CodeInvalid, "%v", err)
			}
		}
		return accept(in(pl))
	case events.RunFinishedV1:
		if run.State != events.StateRunning && run.State != events.StateCrashed {
			return reject(CodeRunFinished, "run %q is already %s", p.Run, run.State)
		}
		switch {
		case pl.State == events.StateKilled:
		case pl.State == "" && pl.ExitCode == 0:
			pl.State = events.StateFinished
		case pl.State == "":
			pl.State = events.StateFailed
		case pl.State != events.StateFinished && pl.State != events.StateFailed:
			return reject(CodeInvalid, "a run finishes as finished, failed or killed, not %q", pl.State)
		}
		return accept(in(pl))
	case events.RunCrashedV1:
		return reject(CodeForbidden, "only Logbook's crash detector marks a run crashed (after %s without a heartbeat or a log)", s.CrashAfter)
	case events.RunHeartbeatRecordedV1:
		return decideHeartbeat(s, run, p, in)
	case events.RunUpdatedV1:
		return decideRunUpdated(proj, run, pl, in)
	case events.RunDeletedV1:
		return accept(in(pl))
	case events.RunLinesWrittenV1:
		if run.State != events.StateRunning && run.State != events.StateCrashed {
			return reject(CodeRunFinished, "run %q is %s; it no longer accepts output (resume it to write more)", p.Run, run.State)
		}
		if err := validateLines(pl); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		return accept(in(pl))
	}
	return reject(CodeUnsupportedEvent, "%s cannot be proposed", p.Type)
}

func accept(evs ...events.Event) Decision { return Decision{Events: evs} }

// need returns a rejection unless role allows a.
func need(role events.Role, a Action) (Decision, bool) {
	if Allowed(role, a) {
		return Decision{}, true
	}
	return need2(role, a), false
}

func need2(role events.Role, a Action) Decision {
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

func adminCount(p *Project) int {
	n := 0
	for _, r := range p.Members {
		if r == events.RoleAdmin {
			n++
		}
	}
	return n
}

func decideUserCreated(s *State, actor *User, pl events.UserCreatedV1) Decision {
	if pl.Service {
		if s.Teams[pl.Owner] == nil {
			return reject(CodeUnknownEntity, "a service account needs an owning team; team %q does not exist", pl.Owner)
		}
		if !Allowed(s.RoleOn(actor, ScopeEntity, pl.Owner), CreateServiceAccount) {
			return reject(CodeForbidden, "only a team admin of %q may create its service accounts", pl.Owner)
		}
		if pl.SiteAdmin || pl.Email != "" {
			return reject(CodeInvalid, "a service account has no email address and is never a site admin")
		}
	} else if !Allowed(s.RoleOn(actor, ScopeSite, ""), CreateUser) {
		return reject(CodeForbidden, "only a site admin may create users")
	} else if pl.Owner != "" {
		return reject(CodeInvalid, "only service accounts have an owning team")
	}
	if err := events.ValidateEntity(pl.Username); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if pl.Email != "" {
		if err := events.ValidateEmail(pl.Email); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		if _, taken := s.UserByEmail(pl.Email); taken {
			return reject(CodeEmailTaken, "a user with email %q already exists", pl.Email)
		}
	}
	if len(pl.DisplayName) > events.MaxRunNameLen {
		return reject(CodeInvalid, "display name must be at most %d characters", events.MaxRunNameLen)
	}
	if s.EntityExists(pl.Username) {
		return reject(CodeEntityExists, "the name %q is already taken by a user or team", pl.Username)
	}
	evs := []events.Event{{Entity: pl.Username, Payload: pl}}
	if pl.Service {
		// A service account is a member of its team (it may create
		// projects there) but has no role on any project until invited.
		evs = append(evs, events.Event{Entity: pl.Owner, Payload: events.TeamMemberJoinedV1{Username: pl.Username, Role: events.TeamMember}})
	}
	// Pending email invites become memberships.
	if pl.Email != "" {
		email := strings.ToLower(pl.Email)
		for _, key := range sortedKeys(s.Projects) {
			proj := s.Projects[key]
			if role, ok := proj.Pending[email]; ok {
				evs = append(evs, events.Event{Entity: proj.Entity, Project: proj.Name,
					Payload: events.MemberJoinedV1{Username: pl.Username, Role: role}})
			}
		}
	}
	return accept(evs...)
}

func decideKeyCreated(s *State, actor *User, pl events.KeyCreatedV1) Decision {
	u := s.Users[pl.Username]
	if u == nil {
		return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
	}
	if !Allowed(s.RoleOn(actor, ScopeUser, u.Username), ManageKeys) {
		return reject(CodeForbidden, "you may only create keys for yourself (or, as a team admin, for the team's service accounts)")
	}
	if len(pl.Hash) != 64 || pl.KeyID == "" || len(pl.Name) > events.MaxNameLen {
		return reject(CodeInvalid, "a key needs an id, a SHA-256 hash and a name of at most %d characters", events.MaxNameLen)
	}
	if _, dup := s.keys[pl.Hash]; dup {
		return reject(CodeInvalid, "this key is already registered")
	}
	return accept(events.Event{Entity: u.Username, Payload: pl})
}

func decideProjectCreated(s *State, actor *User, p events.Event, pl events.ProjectCreatedV1) Decision {
	if err := events.ValidateEntity(p.Entity); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if err := events.ValidateProject(p.Project); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if len(pl.Description) > events.MaxNotesLen {
		return reject(CodeInvalid, "description must be at most %d characters", events.MaxNotesLen)
	}
	if !s.EntityExists(p.Entity) {
		return reject(CodeUnknownEntity, "entity %q does not exist (neither a user nor a team)", p.Entity)
	}
	if !Allowed(s.RoleOn(actor, ScopeEntity, p.Entity), CreateProject) {
		if s.Teams[p.Entity] != nil {
			return reject(CodeForbidden, "only members of team %q may create projects in it", p.Entity)
		}
		return reject(CodeForbidden, "only %q may create projects in their personal entity", p.Entity)
	}
	if _, exists := s.Project(p.Entity, p.Project); exists {
		return reject(CodeProjectExists, "project %s/%s already exists", p.Entity, p.Project)
	}
	pl.Name = p.Project
	return accept(
		events.Event{Entity: p.Entity, Project: p.Project, Payload: pl},
	)
}

func decideInvite(s *State, proj *Project, pl events.MemberInvitedV1, in func(events.Payload) events.Event) Decision {
	if pl.Role == "" {
		pl.Role = events.RoleMember
	}
	if !pl.Role.Valid() {
		return reject(CodeInvalid, "role must be admin, member or viewer, not %q", pl.Role)
	}
	if (pl.Username == "") == (pl.Email == "") {
		return reject(CodeInvalid, "invite exactly one of a username or an email address")
	}
	var user *User
	if pl.Email != "" {
		if err := events.ValidateEmail(pl.Email); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		user, _ = s.UserByEmail(pl.Email)
		if user == nil {
			if _, pending := proj.Pending[strings.ToLower(pl.Email)]; pending {
				return reject(CodeAlreadyMember, "%q already has a pending invite to %s/%s", pl.Email, proj.Entity, proj.Name)
			}
			return accept(in(pl)) // pending until a user with this email exists
		}
	} else if user = s.Users[pl.Username]; user == nil {
		return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
	}
	if _, member := proj.Members[user.Username]; member {
		return reject(CodeAlreadyMember, "%q is already a member of %s/%s (change their role instead)", user.Username, proj.Entity, proj.Name)
	}
	return accept(in(pl), in(events.MemberJoinedV1{Username: user.Username, Role: pl.Role}))
}

func decideRunStarted(proj *Project, actor *User, role events.Role, p events.Event, pl events.RunStartedV1, in func(events.Payload) events.Event) Decision {
	if d, ok := need(role, StartRun); !ok {
		return d
	}
	if pl.RunID == "" {
		pl.RunID = p.ID
	}
	if err := validateRunFields(pl); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	switch pl.Resume {
	case "", "never", "allow", "must":
	default:
		return reject(CodeInvalid, "resume must be allow, must or never, not %q", pl.Resume)
	}
	if existing := proj.Runs[pl.RunID]; existing != nil && !existing.Deleted {
		if pl.Resume != "allow" && pl.Resume != "must" {
			return reject(CodeRunExists, "run id %q is already used in %s/%s (pass resume=allow to continue it)", pl.RunID, proj.Entity, proj.Name)
		}
		if existing.Owner != actor.Username && !Allowed(role, WriteAnyRun) {
			return reject(CodeRunNotYours, "run %q belongs to %q; only they or an Admin may resume it", pl.RunID, existing.Owner)
		}
		ev := in(events.RunResumedV1{RunID: pl.RunID, Config: pl.Config})
		ev.Run = pl.RunID
		return accept(ev)
	} else if existing != nil {
		return reject(CodeRunExists, "run id %q was used by a deleted run in %s/%s", pl.RunID, proj.Entity, proj.Name)
	}
	if pl.Resume == "must" {
		return reject(CodeRunNotFound, "resume=must, but run %q does not exist in %s/%s", pl.RunID, proj.Entity, proj.Name)
	}
	if pl.Name == "" {
		pl.Name = DefaultRunName(p.ID, len(proj.Runs)+1)
	}
	pl.Name = UniqueName(proj.Names, pl.Name)
	pl.Resume = ""
	ev := in(pl)
	ev.Run = pl.RunID
	return accept(ev)
}

func decideRunUpdated(proj *Project, run *Run, pl events.RunUpdatedV1, in func(events.Payload) events.Event) Decision {
	if pl.Name != nil {
		if err := events.ValidateRunName(*pl.Name); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		if *pl.Name == run.Name {
			pl.Name = nil
		} else {
			n := UniqueName(proj.Names, *pl.Name)
			pl.Name = &n
		}
	}
	check := events.RunStartedV1{RunID: run.ID, Tags: append(append([]string{}, pl.AddTags...), pl.RemoveTags...), Config: pl.Config, Wandb: pl.Wandb}
	if pl.JobType != nil {
		check.JobType = *pl.JobType
	}
	if pl.Group != nil {
		check.Group = *pl.Group
	}
	if pl.Notes != nil {
		check.Notes = *pl.Notes
	}
	if err := validateRunFields(check); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	return accept(in(pl))
}

// UniqueName returns name, or name-2, name-3, ... the first that no run of
// the project uses.
func UniqueName(taken map[string]string, name string) string {
	if _, ok := taken[name]; !ok {
		return name
	}
	for i := 2; ; i++ {
		n := name + "-" + strconv.Itoa(i)
		if _, ok := taken[n]; !ok {
			return n
		}
	}
}

var (
	adjectives = []string{"amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fancy", "gentle",
		"golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "misty", "noble", "proud",
		"quiet", "rapid", "silver", "smooth", "snowy", "solar", "stellar", "sunny", "swift", "vivid"}
	nouns = []string{"aurora", "breeze", "brook", "canyon", "cloud", "comet", "dawn", "dew", "dream", "field",
		"firefly", "forest", "frost", "galaxy", "glade", "haze", "lake", "leaf", "meadow", "moon",
		"night", "ocean", "pine", "planet", "rain", "river", "sky", "star", "sun", "wave"}
)

// DefaultRunName returns a readable W&B-style name, "adjective-noun-n", chosen
// from the proposal id so the same proposal always gets the same name.
func DefaultRunName(seed string, n int) string {
	h := fnv.New32a()
	h.Write([]byte(seed))
	x := h.Sum32()
	return adjectives[x%uint32(len(adjectives))] + "-" + nouns[(x/uint32(len(adjectives)))%uint32(len(nouns))] + "-" + strconv.Itoa(n)
}

func validateRunFields(pl events.RunStartedV1) error {
	if err := events.ValidateRunID(pl.RunID); err != nil {
		return err
	}
	if pl.Name != "" {
		if err := events.ValidateRunName(pl.Name); err != nil {
			return err
		}
	}
	if len(pl.JobType) > events.MaxNameLen || len(pl.Group) > events.MaxRunNameLen {
		return fmt.Errorf("job_type must be at most %d and group at most %d characters", events.MaxNameLen, events.MaxRunNameLen)
	}
	if len(pl.Notes) > events.MaxNotesLen {
		return fmt.Errorf("notes must be at most %d characters", events.MaxNotesLen)
	}
	if len(pl.Tags) > events.MaxTags {
		return fmt.Errorf("a run may have at most %d tags (got %d)", events.MaxTags, len(pl.Tags))
	}
	for _, t := range pl.Tags {
		if err := events.ValidateTag(t); err != nil {
			return err
		}
	}
	if err := ValidateConfig(pl.Wandb); err != nil {
		return fmt.Errorf("W&B client data: %v", err)
	}
	return ValidateConfig(pl.Config)
}

// ValidateConfig checks that a run config is a JSON object within the size
// and depth limits.
func ValidateConfig(c json.RawMessage) error {
	if len(c) == 0 {
		return nil
	}
	if len(c) > events.MaxConfigBytes {
		return fmt.Errorf("config is %d bytes; the limit is %d", len(c), events.MaxConfigBytes)
	}
	if t := bytes.TrimSpace(c); len(t) == 0 || t[0] != '{' {
		return errors.New("config must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(c))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("config is not valid JSON: %v", err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				if depth > events.MaxConfigDepth {
					return fmt.Errorf("config is nested deeper than %d levels", events.MaxConfigDepth)
				}
			} else {
				depth--
			}
		}
	}
	return nil
}

// Limits on written lines (console output, system-metric records).
const (
	MaxLinesPerWrite = 10000
	MaxLineBytes     = 1 << 20
	MaxFileNameLen   = 128
	MaxLineNumber    = 1 << 40
)

func validateLines(pl events.RunLinesWrittenV1) error {
	if pl.File == "" || len(pl.File) > MaxFileNameLen || strings.ContainsAny(pl.File, "\x00\n\r") {
		return fmt.Errorf("file name must be 1 to %d characters without line breaks", MaxFileNameLen)
	}
	if len(pl.Lines) == 0 || len(pl.Lines) > MaxLinesPerWrite {
		return fmt.Errorf("a write carries 1 to %d lines (got %d)", MaxLinesPerWrite, len(pl.Lines))
	}
	if pl.Offset < 0 || pl.Offset+int64(len(pl.Lines)) > MaxLineNumber {
		return fmt.Errorf("line offset must be from 0 to %d (got %d)", MaxLineNumber, pl.Offset)
	}
	for i, l := range pl.Lines {
		if len(l) > MaxLineBytes {
			return fmt.Errorf("line %d is %d bytes; the limit is %d", pl.Offset+int64(i), len(l), MaxLineBytes)
		}
	}
	return nil
}

// newRows validates a batch of rows and keeps those after lastStep. Steps
// must increase strictly within the batch.
func newRows(rows []events.Row, lastStep int64) (kept []events.Row, dropped int, err error) {
	if len(rows) == 0 {
		return nil, 0, errors.New("a log batch needs at least one row")
	}
	if len(rows) > events.MaxRowsPerBatch {
		return nil, 0, fmt.Errorf("a log batch may carry at most %d rows (got %d)", events.MaxRowsPerBatch, len(rows))
	}
	prev := int64(-1 << 62)
	valid := make(map[string]struct{}, 64) // metric keys already checked: rows repeat them
	for i, r := range rows {
		if r.Step < 0 {
			return nil, 0, fmt.Errorf("row %d: step must not be negative (got %d)", i, r.Step)
		}
		if r.Step <= prev {
			return nil, 0, fmt.Errorf("row %d: steps must increase within a batch (%d after %d)", i, r.Step, prev)
		}
		prev = r.Step
		if len(r.Values) == 0 {
			return nil, 0, fmt.Errorf("row %d (step %d) has no values", i, r.Step)
		}
		if len(r.Values) > events.MaxMetricsPerRow {
			return nil, 0, fmt.Errorf("row %d has %d metrics; the limit is %d", i, len(r.Values), events.MaxMetricsPerRow)
		}
		for k := range r.Values {
			if _, ok := valid[k]; ok {
				continue
			}
			if err := events.ValidateMetricKey(k); err != nil {
				return nil, 0, fmt.Errorf("row %d: %v", i, err)
			}
			valid[k] = struct{}{}
		}
		if r.Step <= lastStep {
			dropped++
		}
	}
	// Steps increase, so the dropped rows are a prefix.
	if dropped == len(rows) {
		return nil, dropped, nil
	}
	return rows[dropped:], dropped, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
