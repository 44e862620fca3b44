package policy

import (
	"fmt"
	"strings"

	"github.com/logbook/logbook/events"
)

// Action is something a user may or may not do.
type Action string

// The actions the permission table covers.
const (
	// On a project.
	ReadProject    Action = "read project, runs, history and members"
	LeaveProject   Action = "leave the project"
	StartRun       Action = "start a run"
	WriteOwnRun    Action = "log to, update, finish or delete their own run"
	WriteAnyRun    Action = "log to, update, finish or delete another member's run"
	ManageMembers  Action = "invite, remove or change the role of members, revoke invites"
	DeleteProject  Action = "delete the project"
	ReadAuditTrail Action = "read the audit trail"
	CreateArtifact Action = "create and commit artifact versions, give them aliases"
	DeleteArtifact Action = "delete artifact versions"
	// On an entity (a user's personal entity, or a team).
	CreateProject        Action = "create a project in the entity"
	ManageTeam           Action = "add team members or change their team role"
	CreateServiceAccount Action = "create a service account owned by the team"
	// On a user.
	ManageKeys Action = "create, list and revoke the user's API keys"
	// On the installation.
	CreateUser Action = "create users"
	CreateTeam Action = "create teams"
	// ReadSiteAudit is reading the audit trail of every user and team
	// (refusals above project level included).
	ReadSiteAudit Action = "read the audit trail of every user and team"
	// QuarantineEvents is skipping an event of the log that cannot be
	// read, for good, on every replayer (policy/quarantine.go).
	QuarantineEvents Action = "quarantine an unreadable event of the log"
	// Derived is the action of event types that only the policy produces
	// (member_joined, run_resumed): no role may propose them.
	Derived Action = "(produced by the policy only)"
	// SystemOnly is what only Logbook itself (SystemActor: the crash
	// detector) proposes: no user role allows it.
	SystemOnly Action = "(Logbook's crash detector only)"
)

// Scope is what an action is done to; it decides which role of the actor
// counts (see RoleOn).
type Scope string

// Scopes.
const (
	ScopeProject Scope = "project"
	ScopeEntity  Scope = "entity"
	ScopeUser    Scope = "user"
	ScopeSite    Scope = "site"
)

// Permission is one row of the permission table: the least role on the
// action's scope that allows it. Roles order Viewer < Member < Admin.
type Permission struct {
	Action  Action
	Scope   Scope
	MinRole events.Role // "" means nobody
}

// Permissions is the single source of truth for who may do what. Decide and
// the read service consult it through Allowed; the README renders it
// (RenderMarkdown).
var Permissions = []Permission{
	{ReadProject, ScopeProject, events.RoleViewer},
	{LeaveProject, ScopeProject, events.RoleViewer},
	{StartRun, ScopeProject, events.RoleMember},
	{WriteOwnRun, ScopeProject, events.RoleMember},
	{WriteAnyRun, ScopeProject, events.RoleAdmin},
	{ManageMembers, ScopeProject, events.RoleAdmin},
	{DeleteProject, ScopeProject, events.RoleAdmin},
	{ReadAuditTrail, ScopeProject, events.RoleAdmin},
	{CreateArtifact, ScopeProject, events.RoleMember},
	{DeleteArtifact, ScopeProject, events.RoleAdmin},
	{CreateProject, ScopeEntity, events.RoleMember},
	{ManageTeam, ScopeEntity, events.RoleAdmin},
	{CreateServiceAccount, ScopeEntity, events.RoleAdmin},
	{ManageKeys, ScopeUser, events.RoleAdmin},
	{CreateUser, ScopeSite, events.RoleAdmin},
	{CreateTeam, ScopeSite, events.RoleAdmin},
	{ReadSiteAudit, ScopeSite, events.RoleAdmin},
	{QuarantineEvents, ScopeSite, events.RoleAdmin},
	{Derived, ScopeProject, ""},
	{SystemOnly, ScopeProject, ""},
}

// ProposalAction maps every event type to the action a proposal of it
// needs. Two types have a variant decided by the proposal itself, noted in
// Variant: removing yourself is LeaveProject, writing to another member's
// run is WriteAnyRun, and creating a service account is
// CreateServiceAccount on its owning team.
var ProposalAction = []struct {
	Type    events.Type
	Action  Action
	Variant string
}{
	{events.UserCreated, CreateUser, "a service account: " + string(CreateServiceAccount) + " on its team"},
	{events.KeyCreated, ManageKeys, ""},
	{events.KeyRevoked, ManageKeys, ""},
	{events.TeamCreated, CreateTeam, ""},
	{events.TeamMemberJoined, ManageTeam, ""},
	{events.ProjectCreated, CreateProject, ""},
	{events.MemberInvited, ManageMembers, ""},
	{events.MemberJoined, Derived, ""},
	{events.RoleChanged, ManageMembers, ""},
	{events.MemberRemoved, ManageMembers, "yourself: " + string(LeaveProject)},
	{events.InviteRevoked, ManageMembers, ""},
	{events.ProjectDeleted, DeleteProject, ""},
	{events.RunStarted, StartRun, "resuming another member's run: " + string(WriteAnyRun)},
	{events.RunResumed, Derived, ""},
	{events.RunUpdated, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.MetricsLogged, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.SummaryUpdated, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.RunFinished, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.RunCrashed, SystemOnly, ""},
	{events.RunDeleted, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.RunLinesWritten, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.RunHeartbeatRecorded, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.RunStreamReceived, WriteOwnRun, "another member's run: " + string(WriteAnyRun)},
	{events.ArtifactCreated, CreateArtifact, ""},
	{events.ArtifactCommitted, CreateArtifact, ""},
	{events.ArtifactAliasesAdded, CreateArtifact, ""},
	{events.ArtifactUsed, WriteOwnRun, "another member's run: " + string(WriteAnyRun) + "; and " + string(ReadProject) + " on the artifact's project"},
	{events.ArtifactDeleted, DeleteArtifact, ""},
	{events.ArtifactLinked, CreateArtifact, ""},
	{events.EventQuarantined, QuarantineEvents, ""},
}

// ReadEndpoint maps every HTTP read endpoint to the action it needs.
var ReadEndpoint = []struct {
	Route  string // method and path pattern, as registered
	Action Action
}{
	{"GET /api/v1/projects/{entity}/{project}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/members", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/history", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/lines", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/files", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/files/{file...}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/run-groups", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/events", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/sampled", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/export", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/asof", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/artifacts", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/artifacts/{collection}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/artifacts/{collection}/{version}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/artifacts/{collection}/{version}/files/{path...}", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/runs/{run}/artifacts", ReadProject},
	{"GET /api/v1/projects/{entity}/{project}/audit", ReadAuditTrail},
	{"GET /api/v1/users/{username}/keys", ManageKeys},
	{"GET /api/v1/users/{username}/audit", ManageKeys},
	{"GET /api/v1/teams/{team}/audit", ManageTeam},
	{"GET /api/v1/audit", ReadSiteAudit},
}

// ActionOf returns the action a proposal type needs (before variants).
func ActionOf(t events.Type) (Action, bool) {
	for _, p := range ProposalAction {
		if p.Type == t {
			return p.Action, true
		}
	}
	return "", false
}

// PermissionOf returns the table row of an action.
func PermissionOf(a Action) (Permission, bool) {
	for _, p := range Permissions {
		if p.Action == a {
			return p, true
		}
	}
	return Permission{}, false
}

func rank(r events.Role) int {
	switch r {
	case events.RoleViewer:
		return 1
	case events.RoleMember:
		return 2
	case events.RoleAdmin:
		return 3
	}
	return 0
}

// Allowed reports whether role (possibly "" for no role) on the action's
// scope may perform a. Unknown actions are denied.
func Allowed(role events.Role, a Action) bool {
	p, ok := PermissionOf(a)
	return ok && rank(p.MinRole) > 0 && rank(role) >= rank(p.MinRole)
}

// RoleOn is the one rule for the actor's role on a scope other than a
// project (projects: State.Role and EffectiveRole):
//
//   - entity: a user is Admin of their personal entity; a team admin is
//     Admin and a team member (service accounts included) Member of the
//     team; the site admin is Admin of every team.
//   - user: a user is Admin of themselves; the site admin of every user; a
//     team admin of the team's service accounts.
//   - site: the site admin is Admin.
func (s *State) RoleOn(actor *User, scope Scope, target string) events.Role {
	switch scope {
	case ScopeSite:
		if actor.SiteAdmin {
			return events.RoleAdmin
		}
	case ScopeEntity:
		if target == actor.Username && s.Users[target] != nil {
			return events.RoleAdmin
		}
		t := s.Teams[target]
		if t == nil {
			return ""
		}
		if actor.SiteAdmin {
			return events.RoleAdmin
		}
		switch t.Members[actor.Username] {
		case events.TeamAdmin:
			return events.RoleAdmin
		case events.TeamMember:
			return events.RoleMember
		}
	case ScopeUser:
		u := s.Users[target]
		switch {
		case u == nil:
		case u.Username == actor.Username || actor.SiteAdmin:
			return events.RoleAdmin
		case u.Service && s.RoleOn(actor, ScopeEntity, u.Owner) == events.RoleAdmin:
			return events.RoleAdmin
		}
	}
	return ""
}

// RenderMarkdown renders the permission table as the README shows it: one
// row per action, one column per kind of actor on a project of a team.
func RenderMarkdown() string {
	var b strings.Builder
	b.WriteString("| Action | Scope | Viewer | Member | Admin | Team admin | Service account | None | Site admin |\n")
	b.WriteString("|---|---|:-:|:-:|:-:|:-:|:-:|:-:|:-:|\n")
	mark := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "-"
	}
	for _, p := range Permissions {
		if p.Action == Derived || p.Action == SystemOnly {
			continue
		}
		cells := []string{string(p.Action), string(p.Scope)}
		for _, k := range MatrixPrincipals {
			cells = append(cells, mark(Allowed(k.RoleOn(p.Scope), p.Action)))
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	b.WriteString("\nWhich action each proposed event needs:\n\n| Event | Action | Variant |\n|---|---|---|\n")
	for _, p := range ProposalAction {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Type, p.Action, p.Variant)
	}
	b.WriteString("\nWhich action each read endpoint needs:\n\n| Endpoint | Action |\n|---|---|\n")
	for _, r := range ReadEndpoint {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.Route, r.Action)
	}
	return b.String()
}

// Principal is a kind of actor in the permission matrix, described by its
// role on each scope for a project of a team (the team entity, the actor
// itself as the user scope, and the installation).
type Principal struct {
	Name    string
	Project events.Role
	Entity  events.Role
	User    events.Role // on another user of the team (a service account)
	Site    events.Role
}

// RoleOn returns the principal's role on a scope.
func (k Principal) RoleOn(s Scope) events.Role {
	switch s {
	case ScopeProject:
		return k.Project
	case ScopeEntity:
		return k.Entity
	case ScopeUser:
		return k.User
	case ScopeSite:
		return k.Site
	}
	return ""
}

// MatrixPrincipals are the columns of the permission matrix. Viewers,
// Members and Admins are team members invited to the project with that role;
// "none" is a user outside the team; a service account belongs to the team
// but has no project role until invited (default deny); the site admin
// administers users and teams but has no role on projects. The user scope is
// another service account of the team.
var MatrixPrincipals = []Principal{
	{Name: "viewer", Project: events.RoleViewer, Entity: events.RoleMember},
	{Name: "member", Project: events.RoleMember, Entity: events.RoleMember},
	{Name: "admin", Project: events.RoleAdmin, Entity: events.RoleMember},
	{Name: "team-admin", Project: events.RoleAdmin, Entity: events.RoleAdmin, User: events.RoleAdmin},
	{Name: "service-account", Entity: events.RoleMember},
	{Name: "none"},
	{Name: "site-admin", Entity: events.RoleAdmin, User: events.RoleAdmin, Site: events.RoleAdmin},
}
