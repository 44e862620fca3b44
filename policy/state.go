// Package policy decides which proposed events may enter the log.
//
// Decide is a pure function of the policy State and a proposal. The State is
// a fold of the accepted events, rebuilt from the events stream at start-up,
// so that a restarted decider decides exactly as the one before it.
package policy

import (
	"strings"
	"time"

	"github.com/logbook/logbook/events"
)

// User is what the policy knows of a user.
type User struct {
	Username    string
	Email       string
	DisplayName string
	SiteAdmin   bool
	Service     bool
	Owner       string            // the owning team of a service account
	Keys        map[string]string // key id -> hash
	// KeyInfo describes the active keys (never their hash) for listing.
	KeyInfo map[string]KeyInfo
}

// KeyInfo is what a key's owner sees of it: never the key or its hash.
type KeyInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Team is a team entity and its members.
type Team struct {
	Name    string
	Members map[string]events.TeamRole
}

// Run is what the policy knows of a run.
type Run struct {
	ID       string
	Name     string
	Owner    string
	State    string
	LastStep int64 // -1 before the first row
	Deleted  bool
	// LastActivity is the time of the run's last event other than a crash
	// (start, resume, rows, output, heartbeat, update...). It comes from
	// event times, so a rebuilt state has the same value.
	LastActivity time.Time
	// HistoryLines counts the lines of the run's W&B history stream seen
	// (one more than the highest line number), HistoryGaps the runs of
	// lines that never arrived (events.ReceiveLines).
	HistoryLines int64
	HistoryGaps  []events.LineGap
}

// Project is a project's members, pending invites and runs.
type Project struct {
	Entity  string
	Name    string
	Members map[string]events.Role
	Pending map[string]events.Role // email -> role
	Runs    map[string]*Run
	Names   map[string]string // display name -> run id
	meta    map[string]*runMeta
	// Collections are the project's artifacts by name.
	Collections map[string]*Collection
}

// State is the policy's view of the log.
type State struct {
	Users    map[string]*User
	Teams    map[string]*Team
	Projects map[string]*Project // "entity/project"
	emails   map[string]string   // email -> username
	keys     map[string]string   // key hash -> username
	// decided remembers which proposals produced events, so a re-delivered
	// proposal is not decided twice. Metric batches are not recorded: their
	// steps make them idempotent (rows at or below a run's last step are
	// dropped).
	decided map[string]string // proposal id -> run id it concerned
	// decidedBy is the actor of each remembered proposal: another actor
	// re-using the id is refused, not answered with the original outcome.
	decidedBy map[string]string
	// artifacts are every artifact version by id.
	artifacts map[string]*Artifact
	// seq is the last stream sequence applied per aggregate (entity/project,
	// or entity/ for entity-level events), for optimistic concurrency.
	seq map[string]uint64
	// quarantined are the stream sequences every replayer skips
	// (event_quarantined; policy/quarantine.go).
	quarantined map[uint64]bool

	// CrashAfter is how long a running run may stay quiet before the crash
	// sweeper's RunCrashed proposal is accepted (configuration, not log
	// state; DefaultCrashAfter unless set).
	CrashAfter time.Duration
}

// NewState returns the empty state (an empty log).
func NewState() *State {
	return &State{
		Users:     map[string]*User{},
		Teams:     map[string]*Team{},
		Projects:  map[string]*Project{},
		emails:    map[string]string{},
		keys:      map[string]string{},
		decided:   map[string]string{},
		decidedBy: map[string]string{},
		artifacts: map[string]*Artifact{},
		seq:       map[string]uint64{},

		quarantined: map[uint64]bool{},

		CrashAfter: DefaultCrashAfter,
	}
}

// ProjectKey is the map key of a project.
func ProjectKey(entity, project string) string { return entity + "/" + project }

// UserByKeyHash returns the user an API key hash belongs to, if the key is
// active.
func (s *State) UserByKeyHash(hash string) (*User, bool) {
	name, ok := s.keys[hash]
	if !ok {
		return nil, false
	}
	u, ok := s.Users[name]
	return u, ok
}

// UserByEmail returns the user with this email address.
func (s *State) UserByEmail(email string) (*User, bool) {
	name, ok := s.emails[strings.ToLower(email)]
	if !ok {
		return nil, false
	}
	return s.Users[name], true
}

// Project returns a live project.
func (s *State) Project(entity, project string) (*Project, bool) {
	p, ok := s.Projects[ProjectKey(entity, project)]
	return p, ok
}

// EntityExists reports whether a user or team owns this entity name.
func (s *State) EntityExists(name string) bool {
	_, u := s.Users[name]
	_, t := s.Teams[name]
	return u || t
}

// Role returns the effective role of user in a project: a team admin is
// Admin on every project of the team; otherwise the membership role, or ""
// for none.
func (s *State) Role(user string, p *Project) events.Role {
	if p == nil {
		return ""
	}
	var teamRole events.TeamRole
	if t, ok := s.Teams[p.Entity]; ok {
		teamRole = t.Members[user]
	}
	return EffectiveRole(teamRole, p.Members[user])
}

// EffectiveRole is the one rule that combines a user's team role in the
// project's entity ("" if none) with their project membership role ("" if
// none): a team admin acts as Admin on every project of the team.
func EffectiveRole(team events.TeamRole, member events.Role) events.Role {
	if team == events.TeamAdmin {
		return events.RoleAdmin
	}
	return member
}

// Seq returns the last stream sequence applied to an aggregate.
func (s *State) Seq(entity, project string) uint64 { return s.seq[ProjectKey(entity, project)] }

// LastSeq returns the highest stream sequence applied to any aggregate.
func (s *State) LastSeq() uint64 {
	var max uint64
	for _, v := range s.seq {
		max = maxU(max, v)
	}
	return max
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// Decided reports whether a proposal has already produced events, and the
// run it concerned.
func (s *State) Decided(proposalID string) (runID string, ok bool) {
	runID, ok = s.decided[proposalID]
	return runID, ok
}

// Advance records that an aggregate's events up to seq are applied (for
// events applied before their sequence was known).
func (s *State) Advance(entity, project string, seq uint64) {
	if k := ProjectKey(entity, project); seq > s.seq[k] {
		s.seq[k] = seq
	}
}

// Apply folds an accepted event, stored at stream sequence seq, into the
// state. Events at or below the aggregate's last applied sequence are
// ignored, so applying the same event twice is harmless. seq 0 means
// "unknown" and always applies.
func (s *State) Apply(seq uint64, e events.Event) {
	agg := ProjectKey(e.Entity, e.Project)
	if seq != 0 {
		if seq <= s.seq[agg] {
			return
		}
		s.seq[agg] = seq
	}
	if e.Cause != "" && e.Type != events.MetricsLogged {
		s.decided[e.Cause] = e.Run
		if _, ok := s.decidedBy[e.Cause]; !ok {
			s.decidedBy[e.Cause] = e.Actor
		}
	}
	p := s.Projects[agg]
	var run *Run
	if p != nil && e.Run != "" {
		run = p.Runs[e.Run]
	}
	if run != nil && e.Type != events.RunCrashed && e.Time.After(run.LastActivity) {
		run.LastActivity = e.Time
	}
	// Each payload type is folded by exactly one of these.
	s.applyDirectory(e)
	s.applyProject(agg, p, e)
	applyRun(p, run, e)
	s.applyArtifact(p, e)
	if q, ok := e.Payload.(events.EventQuarantinedV1); ok && q.Seq < seq {
		s.quarantined[q.Seq] = true
	}
}

// applyDirectory folds users, keys and teams.
func (s *State) applyDirectory(e events.Event) {
	switch pl := e.Payload.(type) {
	case events.UserCreatedV1:
		s.Users[pl.Username] = &User{Username: pl.Username, Email: pl.Email, DisplayName: pl.DisplayName,
			SiteAdmin: pl.SiteAdmin, Service: pl.Service, Owner: pl.Owner, Keys: map[string]string{}, KeyInfo: map[string]KeyInfo{}}
		if pl.Email != "" {
			s.emails[strings.ToLower(pl.Email)] = pl.Username
		}
	case events.KeyCreatedV1:
		if u := s.Users[pl.Username]; u != nil {
			u.Keys[pl.KeyID] = pl.Hash
			u.KeyInfo[pl.KeyID] = KeyInfo{ID: pl.KeyID, Name: pl.Name, Created: e.Time}
			s.keys[pl.Hash] = pl.Username
		}
	case events.KeyRevokedV1:
		if u := s.Users[pl.Username]; u != nil {
			delete(s.keys, u.Keys[pl.KeyID])
			delete(u.Keys, pl.KeyID)
			delete(u.KeyInfo, pl.KeyID)
		}
	case events.TeamCreatedV1:
		s.Teams[pl.Name] = &Team{Name: pl.Name, Members: map[string]events.TeamRole{}}
	case events.TeamMemberJoinedV1:
		if t := s.Teams[e.Entity]; t != nil {
			t.Members[pl.Username] = pl.Role
		}
	}
}

// applyProject folds projects, their members and invites; p is the
// project the event belongs to (nil before it is created).
func (s *State) applyProject(agg string, p *Project, e events.Event) {
	switch pl := e.Payload.(type) {
	case events.ProjectCreatedV1:
		s.Projects[agg] = &Project{Entity: e.Entity, Name: e.Project,
			Members: map[string]events.Role{e.Actor: events.RoleAdmin},
			Pending: map[string]events.Role{}, Runs: map[string]*Run{}, Names: map[string]string{}, Collections: map[string]*Collection{}}
	case events.ProjectDeletedV1:
		delete(s.Projects, agg)
	case events.MemberInvitedV1:
		if p != nil && pl.Username == "" && pl.Email != "" {
			p.Pending[strings.ToLower(pl.Email)] = pl.Role
		}
	case events.InviteRevokedV2:
		if p != nil {
			delete(p.Pending, strings.ToLower(pl.Email))
		}
	case events.MemberJoinedV1:
		if p != nil {
			p.Members[pl.Username] = pl.Role
			if u := s.Users[pl.Username]; u != nil && u.Email != "" {
				delete(p.Pending, strings.ToLower(u.Email))
			}
		}
	case events.RoleChangedV1:
		if p != nil {
			p.Members[pl.Username] = pl.Role
		}
	case events.MemberRemovedV1:
		if p != nil {
			delete(p.Members, pl.Username)
		}
	}
}

// applyRun folds runs: p is the event's project and run its run, if they
// exist.
func applyRun(p *Project, run *Run, e events.Event) {
	switch pl := e.Payload.(type) {
	case events.RunStartedV1:
		if p != nil {
			p.Runs[pl.RunID] = &Run{ID: pl.RunID, Name: pl.Name, Owner: e.Actor, State: events.StateRunning, LastStep: -1, LastActivity: e.Time}
			p.Names[pl.Name] = pl.RunID
		}
	case events.RunResumedV1:
		if run != nil {
			run.State = events.StateRunning
		}
	case events.RunUpdatedV1:
		if run != nil && pl.Name != nil {
			delete(p.Names, run.Name)
			run.Name = *pl.Name
			p.Names[run.Name] = run.ID
		}
	case events.MetricsLoggedV2:
		if run != nil {
			if pl.Len() > 0 && pl.Last() > run.LastStep {
				run.LastStep = pl.Last()
			}
			run.State = events.StateRunning // a crashed run that logs again is running
		}
	case events.RunFinishedV1:
		if run != nil {
			run.State = pl.State
		}
	case events.RunCrashedV1:
		if run != nil {
			run.State = events.StateCrashed
		}
	case events.RunHeartbeatRecordedV1:
		if run != nil && run.State == events.StateCrashed {
			run.State = events.StateRunning // a crashed run that reports again is running
		}
	case events.RunStreamReceivedV1:
		if run != nil {
			run.HistoryLines, run.HistoryGaps, _ = events.ReceiveLines(run.HistoryLines, run.HistoryGaps, run.LastStep, pl)
		}
	case events.RunDeletedV1:
		if run != nil {
			run.Deleted = true
			delete(p.Names, run.Name)
		}
	}
	if p != nil && e.Run != "" {
		p.applyRunMeta(e)
	}
}
