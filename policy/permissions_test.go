package policy

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// matrixWorld is the permission matrix's fixture: team acme with project
// acme/proj. Every principal of MatrixPrincipals is a user named after it:
// viewer, member and admin are team members with that project role,
// team-admin is a team admin (and a project Member, which it outranks),
// service-account is a service account of acme without an invite, none is
// outside the team. "owner" is a second project Admin (so nobody is the last
// Admin) who owns run "other"; each principal owns run "own-<name>" (for the
// ones without a role: started before they lost it). sa-target is another
// service account of acme with key "k1"; pending@example.com has an invite.
func matrixWorld(t *testing.T) *State {
	t.Helper()
	s := NewState()
	seq := uint64(0)
	apply := func(actor, entity, project, run string, pl events.Payload) {
		seq++
		s.Apply(seq, events.Event{ID: events.DerivedID("01JDX0000000000000000000M0", int(seq)), Type: pl.EventType(),
			Entity: entity, Project: project, Run: run, Actor: actor, Time: time.Unix(1795779453, 0), Payload: pl})
	}
	apply("site-admin", "site-admin", "", "", events.UserCreatedV1{Username: "site-admin", SiteAdmin: true})
	for _, u := range []string{"viewer", "member", "admin", "team-admin", "none", "owner"} {
		apply("site-admin", u, "", "", events.UserCreatedV1{Username: u, Email: u + "@example.com"})
	}
	apply("site-admin", "acme", "", "", events.TeamCreatedV1{Name: "acme"})
	for _, u := range []string{"viewer", "member", "admin", "owner"} {
		apply("site-admin", "acme", "", "", events.TeamMemberJoinedV1{Username: u, Role: events.TeamMember})
	}
	apply("site-admin", "acme", "", "", events.TeamMemberJoinedV1{Username: "team-admin", Role: events.TeamAdmin})
	for _, sa := range []string{"service-account", "sa-target"} {
		apply("team-admin", sa, "", "", events.UserCreatedV1{Username: sa, Service: true, Owner: "acme"})
		apply("team-admin", "acme", "", "", events.TeamMemberJoinedV1{Username: sa, Role: events.TeamMember})
	}
	apply("team-admin", "sa-target", "", "", events.KeyCreatedV1{Username: "sa-target", KeyID: "k1", Hash: strings.Repeat("a", 64)})
	apply("owner", "acme", "proj", "", events.ProjectCreatedV1{Name: "proj"})
	roles := map[string]events.Role{"viewer": events.RoleViewer, "member": events.RoleMember, "admin": events.RoleAdmin,
		"team-admin": events.RoleMember}
	for _, u := range []string{"viewer", "member", "admin", "team-admin", "none", "service-account", "site-admin"} {
		apply("owner", "acme", "proj", "", events.MemberJoinedV1{Username: u, Role: events.RoleMember})
		apply(u, "acme", "proj", "own-"+u, events.RunStartedV1{RunID: "own-" + u, Name: "own-" + u})
		if r, ok := roles[u]; ok {
			apply("owner", "acme", "proj", "", events.RoleChangedV1{Username: u, Role: r})
		} else {
			apply("owner", "acme", "proj", "", events.MemberRemovedV1{Username: u})
		}
	}
	apply("owner", "acme", "proj", "other", events.RunStartedV1{RunID: "other", Name: "other"})
	apply("owner", "acme", "proj", "", events.MemberInvitedV1{Email: "pending@example.com", Role: events.RoleViewer})
	// Artifact "ds": version "art-committed" (v0, latest), version "art-pending".
	apply("owner", "acme", "proj", "", events.ArtifactCreatedV1{ArtifactID: "art-committed", Collection: "ds", Type: "dataset", Digest: "d0"})
	apply("owner", "acme", "proj", "", events.ArtifactCommittedV1{ArtifactID: "art-committed", Aliases: []string{"latest"}})
	apply("owner", "acme", "proj", "", events.ArtifactCreatedV1{ArtifactID: "art-pending", Collection: "ds", Type: "dataset", Digest: "d1"})
	// Check the fixture against the principals' described roles.
	for _, k := range MatrixPrincipals {
		a := s.Users[k.Name]
		p, _ := s.Project("acme", "proj")
		got := []events.Role{s.Role(k.Name, p), s.RoleOn(a, ScopeEntity, "acme"), s.RoleOn(a, ScopeUser, "sa-target"), s.RoleOn(a, ScopeSite, "")}
		want := []events.Role{k.Project, k.Entity, k.User, k.Site}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("fixture: %s has roles %v (project, entity, user, site), want %v", k.Name, got, want)
		}
	}
	return s
}

// proposalCase is one row of the proposal side of the matrix: a proposal
// that every rule but the permission would accept, and the action it needs.
type proposalCase struct {
	name   string
	action Action
	scope  Scope
	make   func(actor string) events.Event
}

func proposalCases() []proposalCase {
	proj := func(pl events.Payload) func(string) events.Event {
		return func(string) events.Event { return events.Event{Entity: "acme", Project: "proj", Payload: pl} }
	}
	own := func(pl events.Payload) func(string) events.Event {
		return func(a string) events.Event {
			return events.Event{Entity: "acme", Project: "proj", Run: "own-" + a, Payload: pl}
		}
	}
	other := func(pl events.Payload) func(string) events.Event {
		return func(string) events.Event {
			return events.Event{Entity: "acme", Project: "proj", Run: "other", Payload: pl}
		}
	}
	ent := func(entity string, pl events.Payload) func(string) events.Event {
		return func(string) events.Event { return events.Event{Entity: entity, Payload: pl} }
	}
	name := "renamed"
	cases := []proposalCase{
		{"user_created", CreateUser, ScopeSite, ent("newbie", events.UserCreatedV1{Username: "newbie"})},
		{"user_created (service account)", CreateServiceAccount, ScopeEntity, ent("bot2", events.UserCreatedV1{Username: "bot2", Service: true, Owner: "acme"})},
		{"key_created (for a service account)", ManageKeys, ScopeUser, ent("sa-target", events.KeyCreatedV1{Username: "sa-target", KeyID: "k2", Hash: strings.Repeat("b", 64)})},
		{"key_revoked (of a service account)", ManageKeys, ScopeUser, ent("sa-target", events.KeyRevokedV1{Username: "sa-target", KeyID: "k1"})},
		{"team_created", CreateTeam, ScopeSite, ent("newteam", events.TeamCreatedV1{Name: "newteam"})},
		{"team_member_joined", ManageTeam, ScopeEntity, ent("acme", events.TeamMemberJoinedV1{Username: "none", Role: events.TeamMember})},
		{"project_created", CreateProject, ScopeEntity, func(string) events.Event {
			return events.Event{Entity: "acme", Project: "proj2", Payload: events.ProjectCreatedV1{Name: "proj2"}}
		}},
		{"member_invited", ManageMembers, ScopeProject, proj(events.MemberInvitedV1{Email: "new@example.com"})},
		{"member_joined", Derived, ScopeProject, proj(events.MemberJoinedV1{Username: "owner", Role: events.RoleViewer})},
		{"role_changed", ManageMembers, ScopeProject, proj(events.RoleChangedV1{Username: "owner", Role: events.RoleMember})},
		{"member_removed (another member)", ManageMembers, ScopeProject, proj(events.MemberRemovedV1{Username: "owner"})},
		{"member_removed (yourself: leave)", LeaveProject, ScopeProject, func(a string) events.Event {
			return events.Event{Entity: "acme", Project: "proj", Payload: events.MemberRemovedV1{Username: a}}
		}},
		{"invite_revoked", ManageMembers, ScopeProject, proj(events.InviteRevokedV2{Email: "pending@example.com"})},
		{"project_deleted", DeleteProject, ScopeProject, proj(events.ProjectDeletedV1{})},
		{"run_started", StartRun, ScopeProject, proj(events.RunStartedV1{Name: "x"})},
		{"run_started (resume another member's run)", WriteAnyRun, ScopeProject, proj(events.RunStartedV1{RunID: "other", Resume: "allow"})},
		{"run_resumed", Derived, ScopeProject, own(events.RunResumedV1{RunID: "x"})},
		{"run_crashed", SystemOnly, ScopeProject, own(events.RunCrashedV1{})},
		{"artifact_created", CreateArtifact, ScopeProject, proj(events.ArtifactCreatedV1{ArtifactID: "art-new", Collection: "ds", Type: "dataset", Digest: "d2"})},
		{"artifact_committed", CreateArtifact, ScopeProject, proj(events.ArtifactCommittedV1{ArtifactID: "art-pending"})},
		{"artifact_aliases_added", CreateArtifact, ScopeProject, proj(events.ArtifactAliasesAddedV1{ArtifactID: "art-committed", Aliases: []string{"best"}})},
		{"artifact_deleted", DeleteArtifact, ScopeProject, proj(events.ArtifactDeletedV1{ArtifactID: "art-committed", Force: true})},
		{"artifact_used (own run)", WriteOwnRun, ScopeProject, own(events.ArtifactUsedV1{ArtifactID: "art-committed"})},
		{"event_quarantined", QuarantineEvents, ScopeSite, func(a string) events.Event {
			return events.Event{Entity: a, Payload: events.EventQuarantinedV1{Seq: 1, Reason: "corrupt"}}
		}},
		{"artifact_used (another member's run)", WriteAnyRun, ScopeProject, other(events.ArtifactUsedV1{ArtifactID: "art-committed"})},
		{"artifact_linked", CreateArtifact, ScopeProject, proj(events.ArtifactLinkedV1{ArtifactID: "art-committed", Portfolio: "ds-portfolio", Aliases: []string{"staging"}})},
	}
	runWrites := []events.Payload{
		events.RunUpdatedV1{Name: &name},
		events.MustRows([]events.Row{{Step: 1, Values: map[string]events.Value{"loss": 1}}}),
		events.SummaryUpdatedV1{Values: map[string]events.Value{"loss": 1}},
		events.RunFinishedV1{},
		events.RunDeletedV1{},
		events.RunLinesWrittenV1{File: "output.log", Lines: []string{"hi"}},
		events.RunHeartbeatRecordedV1{},
		events.RunStreamReceivedV1{File: "wandb-history.jsonl", Offset: 0, Count: 1},
	}
	for _, pl := range runWrites {
		cases = append(cases,
			proposalCase{string(pl.EventType()) + " (own run)", WriteOwnRun, ScopeProject, own(pl)},
			proposalCase{string(pl.EventType()) + " (another member's run)", WriteAnyRun, ScopeProject, other(pl)})
	}
	return cases
}

// denied reports whether a decision is a refusal on permission grounds.
func denied(d Decision) bool {
	if d.Rejection == nil {
		return false
	}
	switch d.Rejection.Code {
	case CodeForbidden, CodeProjectNotFound, CodeRunNotYours, CodeKeyNotFound, CodeUnsupportedEvent, CodeUnauthenticated:
		return true
	}
	return false
}

// TestPermissionMatrixProposals decides every proposal type (with its
// variants) for every principal and checks the outcome against the table.
func TestPermissionMatrixProposals(t *testing.T) {
	s := matrixWorld(t)
	covered := map[events.Type]bool{}
	cells := 0
	for _, c := range proposalCases() {
		for _, k := range MatrixPrincipals {
			p := c.make(k.Name)
			p.ID = events.NewID(time.Now())
			p.Actor = k.Name
			p.Type = p.Payload.EventType()
			covered[p.Type] = true
			want := Allowed(k.RoleOn(c.scope), c.action)
			if c.action == WriteAnyRun && c.name == "run_started (resume another member's run)" {
				want = want && Allowed(k.RoleOn(c.scope), StartRun)
			}
			d := Decide(s, p)
			if got := !denied(d); got != want {
				t.Errorf("%s by %s: allowed=%v, table says %v (%q needs %s on the %s): %+v", c.name, k.Name, got, want,
					c.action, roleWord(PermissionMustOf(t, c.action).MinRole), c.scope, d.Rejection)
			}
			if !want && d.Rejection != nil && d.Rejection.Message == "" {
				t.Errorf("%s by %s: a refusal without a message", c.name, k.Name)
			}
			cells++
		}
	}
	var missing []string
	for _, typ := range events.Types() {
		if !covered[typ] {
			missing = append(missing, string(typ))
		}
		if _, ok := ActionOf(typ); !ok {
			t.Errorf("event type %s has no action in ProposalAction", typ)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the matrix does not propose %v", missing)
	}
	t.Logf("permission matrix (proposals): %d cells (%d proposal variants x %d principals), %d event types", cells, len(proposalCases()), len(MatrixPrincipals), len(events.Types()))
}

func PermissionMustOf(t *testing.T, a Action) Permission {
	p, ok := PermissionOf(a)
	if !ok {
		t.Fatalf("action %q is not in the table", a)
	}
	return p
}

func roleWord(r events.Role) string {
	if r == "" {
		return "a role nobody has"
	}
	return string(r)
}

var update = flag.Bool("update", false, "rewrite the README's permission table")

// TestReadmeRendersPermissionTable: the README shows the table as
// RenderMarkdown renders it. Run with -update to rewrite the README section.
func TestReadmeRendersPermissionTable(t *testing.T) {
	const begin, end = "<!-- permissions:begin (generated by policy.RenderMarkdown; go test ./policy -run Readme -update) -->\n", "<!-- permissions:end -->"
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q section", begin, end)
	}
	want := readme[:i+len(begin)] + RenderMarkdown() + readme[j:]
	if want == readme {
		return
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's permission table differs from policy.Permissions; run go test ./policy -run Readme -update")
}
