package policy

import (
	"sort"
	"strings"

	"github.com/logbook/logbook/events"
)

// The rules of users, keys, teams and new projects: proposals outside any
// project, each checking the actor's role on its own scope.

func decideUserCreated(pr *proposal, pl events.UserCreatedV1) Decision {
	s := pr.s
	if pl.Service {
		if s.Teams[pl.Owner] == nil {
			return reject(CodeUnknownEntity, "a service account needs an owning team; team %q does not exist", pl.Owner)
		}
		if !pr.may(ScopeEntity, pl.Owner, CreateServiceAccount) {
			return reject(CodeForbidden, "only a team admin of %q may create its service accounts", pl.Owner)
		}
		if pl.SiteAdmin || pl.Email != "" {
			return reject(CodeInvalid, "a service account has no email address and is never a site admin")
		}
	} else if !pr.may(ScopeSite, "", CreateUser) {
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
	return accept(append(evs, pendingJoins(s, pl.Username, pl.Email)...)...)
}

// pendingJoins turns the pending invites of a new user's email address
// into memberships, in a stable order.
func pendingJoins(s *State, username, email string) []events.Event {
	if email == "" {
		return nil
	}
	email = strings.ToLower(email)
	var evs []events.Event
	for _, key := range sortedKeys(s.Projects) {
		proj := s.Projects[key]
		if role, ok := proj.Pending[email]; ok {
			evs = append(evs, events.Event{Entity: proj.Entity, Project: proj.Name,
				Payload: events.MemberJoinedV1{Username: username, Role: role}})
		}
	}
	return evs
}

func decideKeyCreated(pr *proposal, pl events.KeyCreatedV1) Decision {
	u := pr.s.Users[pl.Username]
	if u == nil {
		return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
	}
	if !pr.may(ScopeUser, u.Username, ManageKeys) {
		return reject(CodeForbidden, "you may only create keys for yourself (or, as a team admin, for the team's service accounts)")
	}
	if len(pl.Hash) != 64 || pl.KeyID == "" || len(pl.Name) > events.MaxNameLen {
		return reject(CodeInvalid, "a key needs an id, a SHA-256 hash and a name of at most %d characters", events.MaxNameLen)
	}
	if _, dup := pr.s.keys[pl.Hash]; dup {
		return reject(CodeInvalid, "this key is already registered")
	}
	return accept(events.Event{Entity: u.Username, Payload: pl})
}

// decideKeyRevoked answers "no such key" to whoever may not manage the
// user's keys, so keys cannot be probed.
func decideKeyRevoked(pr *proposal, pl events.KeyRevokedV1) Decision {
	u := pr.s.Users[pl.Username]
	if u == nil || !pr.may(ScopeUser, u.Username, ManageKeys) {
		return reject(CodeKeyNotFound, "no key %q for user %q", pl.KeyID, pl.Username)
	}
	if _, ok := u.Keys[pl.KeyID]; !ok {
		return reject(CodeKeyNotFound, "no active key %q for user %q", pl.KeyID, pl.Username)
	}
	return accept(events.Event{Entity: u.Username, Payload: pl})
}

// decideTeamCreated makes the creator the team's first admin.
func decideTeamCreated(pr *proposal, pl events.TeamCreatedV1) Decision {
	if !pr.may(ScopeSite, "", CreateTeam) {
		return reject(CodeForbidden, "only a site admin may create teams")
	}
	if err := events.ValidateEntity(pl.Name); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if pr.s.EntityExists(pl.Name) {
		return reject(CodeEntityExists, "the name %q is already taken by a user or team", pl.Name)
	}
	return accept(
		events.Event{Entity: pl.Name, Payload: pl},
		events.Event{Entity: pl.Name, Payload: events.TeamMemberJoinedV1{Username: pr.actor.Username, Role: events.TeamAdmin}},
	)
}

func decideTeamMemberJoined(pr *proposal, pl events.TeamMemberJoinedV1) Decision {
	team := pr.p.Entity
	if pr.s.Teams[team] == nil {
		return reject(CodeUnknownEntity, "team %q does not exist", team)
	}
	if !pr.may(ScopeEntity, team, ManageTeam) {
		return reject(CodeForbidden, "only a team admin of %q may add team members", team)
	}
	if !pl.Role.Valid() {
		return reject(CodeInvalid, "team role must be %q or %q", events.TeamAdmin, events.TeamMember)
	}
	if u, ok := pr.s.Users[pl.Username]; !ok {
		return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
	} else if u.Service && (u.Owner != team || pl.Role != events.TeamMember) {
		return reject(CodeForbidden, "service account %q belongs to team %q as a member only", pl.Username, u.Owner)
	}
	return accept(events.Event{Entity: team, Payload: pl})
}

func decideProjectCreated(pr *proposal, pl events.ProjectCreatedV1) Decision {
	p, s := pr.p, pr.s
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
	if !pr.may(ScopeEntity, p.Entity, CreateProject) {
		if s.Teams[p.Entity] != nil {
			return reject(CodeForbidden, "only members of team %q may create projects in it", p.Entity)
		}
		return reject(CodeForbidden, "only %q may create projects in their personal entity", p.Entity)
	}
	if _, exists := s.Project(p.Entity, p.Project); exists {
		return reject(CodeProjectExists, "project %s/%s already exists", p.Entity, p.Project)
	}
	pl.Name = p.Project
	return accept(events.Event{Entity: p.Entity, Project: p.Project, Payload: pl})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
