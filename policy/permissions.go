package policy

import "github.com/logbook/logbook/events"

// Action is something a user may or may not do in a project.
type Action string

// The actions the permission table covers.
const (
	ReadProject    Action = "read project, runs, history and members"
	StartRun       Action = "start a run"
	WriteOwnRun    Action = "log to, update or finish their own run"
	WriteAnyRun    Action = "log to, update or finish another member's run"
	ManageMembers  Action = "invite, remove or change the role of members"
	DeleteProject  Action = "delete the project"
	LeaveProject   Action = "leave the project"
	ReadAuditTrail Action = "read the audit trail"
)

// Permissions is the single source of truth for who may do what in a
// project: the least role an action needs. Roles order Viewer < Member < Admin.
var Permissions = []struct {
	Action  Action
	MinRole events.Role
}{
	{ReadProject, events.RoleViewer},
	{LeaveProject, events.RoleViewer},
	{StartRun, events.RoleMember},
	{WriteOwnRun, events.RoleMember},
	{WriteAnyRun, events.RoleAdmin},
	{ManageMembers, events.RoleAdmin},
	{DeleteProject, events.RoleAdmin},
	{ReadAuditTrail, events.RoleAdmin},
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

// Allowed reports whether role (possibly "" for no role) may perform a.
// Unknown actions are denied.
func Allowed(role events.Role, a Action) bool {
	for _, p := range Permissions {
		if p.Action == a {
			return rank(role) > 0 && rank(role) >= rank(p.MinRole)
		}
	}
	return false
}
