package policy

import (
	"strings"

	"github.com/logbook/logbook/events"
)

// The rules of a project's members and of the project itself, past the
// project gate.

func decideInvite(pr *proposal, pl events.MemberInvitedV1) Decision {
	if d, ok := need(pr.role, ManageMembers); !ok {
		return d
	}
	if pl.Role == "" {
		pl.Role = events.RoleMember
	}
	if !pl.Role.Valid() {
		return reject(CodeInvalid, "role must be admin, member or viewer, not %q", pl.Role)
	}
	if (pl.Username == "") == (pl.Email == "") {
		return reject(CodeInvalid, "invite exactly one of a username or an email address")
	}
	proj := pr.proj
	var user *User
	if pl.Email != "" {
		if err := events.ValidateEmail(pl.Email); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		user, _ = pr.s.UserByEmail(pl.Email)
		if user == nil {
			if _, pending := proj.Pending[strings.ToLower(pl.Email)]; pending {
				return reject(CodeAlreadyMember, "%q already has a pending invite to %s/%s", pl.Email, proj.Entity, proj.Name)
			}
			return accept(pr.in(pl)) // pending until a user with this email exists
		}
	} else if user = pr.s.Users[pl.Username]; user == nil {
		return reject(CodeUnknownUser, "user %q does not exist", pl.Username)
	}
	if _, member := proj.Members[user.Username]; member {
		return reject(CodeAlreadyMember, "%q is already a member of %s/%s (change their role instead)", user.Username, proj.Entity, proj.Name)
	}
	return accept(pr.in(pl), pr.in(events.MemberJoinedV1{Username: user.Username, Role: pl.Role}))
}

// decideInviteRevoked records the role the invite offered, and the address
// as invites store it (lower case).
func decideInviteRevoked(pr *proposal, pl events.InviteRevokedV2) Decision {
	if d, ok := need(pr.role, ManageMembers); !ok {
		return d
	}
	offered, ok := pr.proj.Pending[strings.ToLower(pl.Email)]
	if !ok {
		return reject(CodeInviteNotFound, "there is no pending invite for %q", pl.Email)
	}
	return accept(pr.in(events.InviteRevokedV2{Email: strings.ToLower(pl.Email), Role: offered}))
}

// decideRoleChanged accepts a change to the same role with no event.
func decideRoleChanged(pr *proposal, pl events.RoleChangedV1) Decision {
	if d, ok := need(pr.role, ManageMembers); !ok {
		return d
	}
	if !pl.Role.Valid() {
		return reject(CodeInvalid, "role must be admin, member or viewer, not %q", pl.Role)
	}
	cur, ok := pr.proj.Members[pl.Username]
	if !ok {
		return pr.notMember(pl.Username)
	}
	if cur == pl.Role {
		return accept()
	}
	if pr.lastAdmin(cur) {
		return reject(CodeLastAdmin, "%q is the last admin of %s/%s; make another member admin first", pl.Username, pr.p.Entity, pr.p.Project)
	}
	return accept(pr.in(pl))
}

// decideMemberRemoved: removing yourself is leaving (LeaveProject).
func decideMemberRemoved(pr *proposal, pl events.MemberRemovedV1) Decision {
	act := ManageMembers
	if pl.Username == pr.actor.Username {
		act = LeaveProject
	}
	if d, ok := need(pr.role, act); !ok {
		return d
	}
	cur, ok := pr.proj.Members[pl.Username]
	if !ok {
		return pr.notMember(pl.Username)
	}
	if pr.lastAdmin(cur) {
		return reject(CodeLastAdmin, "%q is the last admin of %s/%s and cannot be removed or leave; make another member admin first", pl.Username, pr.p.Entity, pr.p.Project)
	}
	return accept(pr.in(pl))
}

func decideProjectDeleted(pr *proposal, pl events.ProjectDeletedV1) Decision {
	if d, ok := need(pr.role, DeleteProject); !ok {
		return d
	}
	return accept(pr.in(pl))
}

func (pr *proposal) notMember(username string) Decision {
	return reject(CodeNotMember, "%q is not a member of %s/%s", username, pr.p.Entity, pr.p.Project)
}

// lastAdmin reports whether a member whose role is cur is the project's
// only Admin.
func (pr *proposal) lastAdmin(cur events.Role) bool {
	if cur != events.RoleAdmin {
		return false
	}
	n := 0
	for _, r := range pr.proj.Members {
		if r == events.RoleAdmin {
			n++
		}
	}
	return n == 1
}
