package ingest

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// Service is the write side as every write path sees it (the native HTTP
// API, the W&B adapter, the crash sweeper): authenticate a key, submit a
// proposal, ask what the policy state says.
type Service struct {
	Decider  *Decider
	Proposer *Proposer
}

// Mode says how Submit waits.
type Mode int

const (
	// Wait proposes and waits for the decision.
	Wait Mode = iota
	// Queue decides the proposal against the current state first (a dry
	// run): an accepted one is queued without waiting, a refused one is
	// proposed and waited for, so the refusal is both in the log and
	// returned. The hot path (metrics, console lines).
	Queue
	// SkipNoop dry-runs too: a proposal that would record nothing (a
	// heartbeat of a run that reported recently) is answered from the state
	// without a proposal; anything else is proposed and waited for.
	SkipNoop
)

// Ready is closed once the write side has rebuilt its state from the log.
func (s *Service) Ready() <-chan struct{} { return s.Decider.Ready() }

// Authenticate resolves an API key to its user.
func (s *Service) Authenticate(key string) (*policy.User, error) {
	select {
	case <-s.Ready():
	default:
		return nil, errs.New(errs.Unavailable, "starting", "Logbook is starting; retry in a moment")
	}
	var u *policy.User
	s.Decider.View(func(st *policy.State) {
		if found, ok := st.UserByKeyHash(policy.HashKey(key)); ok {
			c := *found
			u = &c
		}
	})
	if u == nil {
		return nil, errs.E(errs.Unauthenticated, "invalid or revoked API key")
	}
	return u, nil
}

// Submit proposes p and reports its outcome. An empty id or time is filled
// in. A refusal is returned both as the outcome's Rejection and as the
// error (its coded form); other errors are failures of Logbook itself.
func (s *Service) Submit(ctx context.Context, p events.Event, mode Mode) (Outcome, error) {
	return s.submit(ctx, p, mode)
}

func (s *Service) submit(ctx context.Context, p events.Event, mode Mode) (Outcome, error) {
	now := time.Now()
	if p.ID == "" {
		p.ID = events.NewID(now)
	}
	if p.Time.IsZero() {
		p.Time = now.UTC()
	}
	if out, ok := s.Decider.Decided(p); ok {
		return out, nil
	}
	wait := true
	var dry policy.Decision
	if mode != Wait {
		dry = s.Check(p)
		wait = dry.Rejection != nil
		if mode == SkipNoop && !wait && len(dry.Events) == 0 {
			return Outcome{Accepted: true, Run: p.Run, RunState: s.Run(p.Entity, p.Project, p.Run).State}, nil
		}
		wait = wait || mode == SkipNoop
	}
	out, err := s.Proposer.Propose(ctx, p, wait)
	if err != nil {
		return out, err
	}
	if out.Rejection != nil {
		return out, out.Rejection.Err()
	}
	if !wait {
		out = Outcome{Accepted: true, Run: p.Run, Dropped: dry.Dropped}
	}
	return out, nil
}

// View calls fn with the policy state, read-locked: fn must not keep it.
func (s *Service) View(fn func(*policy.State)) { s.Decider.View(fn) }

// Check decides p against the current policy state without proposing it.
func (s *Service) Check(p events.Event) policy.Decision {
	var d policy.Decision
	s.Decider.View(func(st *policy.State) { d = policy.Decide(st, p) })
	return d
}

// LogRows queues a batch of rows, in columns, for a run on behalf of
// actor. The edge that parsed the client's format filled in missing times.
func (s *Service) LogRows(ctx context.Context, actor, id, entity, project, run string, rows events.MetricsLoggedV2) (Outcome, error) {
	p := events.Event{ID: id, Actor: actor, Time: time.Now().UTC(), Entity: entity, Project: project, Run: run, Payload: rows}
	return s.submit(ctx, p, Queue)
}

// Heartbeat reports that a run's process is alive on behalf of actor. The
// policy records a heartbeat only when the run has been quiet for a quarter
// of the crash timeout (or was marked crashed); one that would record
// nothing costs no log traffic (SkipNoop).
func (s *Service) Heartbeat(ctx context.Context, actor, id, entity, project, run string) (Outcome, error) {
	return s.Submit(ctx, events.Event{ID: id, Actor: actor, Entity: entity, Project: project, Run: run,
		Payload: events.RunHeartbeatRecordedV1{}}, SkipNoop)
}

// RunInfo is what the policy state knows about a run.
type RunInfo struct {
	ProjectExists bool
	Exists        bool
	State, Owner  string
	// Seq is the project's last applied stream sequence.
	Seq uint64
}

// Run looks a run up in the policy state.
func (s *Service) Run(entity, project, run string) RunInfo {
	var ri RunInfo
	s.Decider.View(func(st *policy.State) {
		ri.Seq = st.Seq(entity, project)
		p, ok := st.Project(entity, project)
		if !ok {
			return
		}
		ri.ProjectExists = true
		if r := p.Runs[run]; r != nil && !r.Deleted {
			ri.Exists, ri.State, ri.Owner = true, r.State, r.Owner
		}
	})
	return ri
}

// Teams lists the teams user belongs to, sorted.
func (s *Service) Teams(user string) []string {
	names := []string{}
	s.Decider.View(func(st *policy.State) {
		for name, t := range st.Teams {
			if _, ok := t.Members[user]; ok {
				names = append(names, name)
			}
		}
	})
	sort.Strings(names)
	return names
}

// Keys lists a user's active keys (id, name, creation time; never the key
// or its hash) to an actor who may manage them.
func (s *Service) Keys(actor *policy.User, user string) ([]policy.KeyInfo, error) {
	out := []policy.KeyInfo{}
	allowed := false
	s.Decider.View(func(st *policy.State) {
		u := st.Users[user]
		if u == nil || !policy.Allowed(st.RoleOn(actor, policy.ScopeUser, user), policy.ManageKeys) {
			return
		}
		allowed = true
		for _, k := range u.KeyInfo {
			out = append(out, k)
		}
	})
	if !allowed {
		return nil, errs.New(errs.NotFound, string(policy.CodeUnknownUser), "user %q does not exist or you may not manage their keys", user)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID
	})
	return out, nil
}

// Audit answers a project's audit trail for actor, newest first, at most
// limit entries before the given time. A non-member gets not-found, a
// member who is not an Admin forbidden.
func (s *Service) Audit(ctx context.Context, actor *policy.User, entity, project string, limit int, before time.Time) ([]AuditEntry, error) {
	var role events.Role
	var exists bool
	s.Decider.View(func(st *policy.State) {
		p, ok := st.Project(entity, project)
		exists, role = ok, st.Role(actor.Username, p)
	})
	if !exists || role == "" {
		return nil, (&policy.Rejection{Code: policy.CodeProjectNotFound,
			Message: fmt.Sprintf("project %s/%s does not exist or you are not a member of it", entity, project)}).Err()
	}
	if !policy.Allowed(role, policy.ReadAuditTrail) {
		return nil, errs.New(errs.Forbidden, string(policy.CodeForbidden), "a %s may not %s", role, policy.ReadAuditTrail)
	}
	entries, err := ReadAudit(ctx, s.Decider.js, s.Decider.subj, entity, project)
	if err != nil {
		return nil, err
	}
	return page(entries, limit, before), nil
}

// Audit trails above project level.
const (
	AuditUser = "user" // a user's creation and keys, and refused proposals about them
	AuditTeam = "team" // a team's creation and members, and refused proposals about them
	AuditSite = "site" // every user's and team's
)

// EntityAudit answers the audit trail of a user or a team (kind AuditUser,
// AuditTeam), or of every one of them (AuditSite), newest first, to an
// actor who may read it: the user, a team admin for the team's service
// accounts and the team, the site admin for all. Others get not-found.
func (s *Service) EntityAudit(ctx context.Context, actor *policy.User, kind, name string, limit int, before time.Time) ([]AuditEntry, error) {
	allowed := false
	s.Decider.View(func(st *policy.State) {
		switch kind {
		case AuditUser:
			allowed = policy.Allowed(st.RoleOn(actor, policy.ScopeUser, name), policy.ManageKeys)
		case AuditTeam:
			allowed = st.Teams[name] != nil && policy.Allowed(st.RoleOn(actor, policy.ScopeEntity, name), policy.ManageTeam)
		case AuditSite:
			allowed, name = policy.Allowed(st.RoleOn(actor, policy.ScopeSite, ""), policy.ReadSiteAudit), "*"
		}
	})
	if !allowed {
		return nil, errs.New(errs.NotFound, "not_found", "no %s %q, or you may not read its audit trail", kind, name)
	}
	entries, err := ReadEntityAudit(ctx, s.Decider.js, s.Decider.subj, name)
	if err != nil {
		return nil, err
	}
	return page(entries, limit, before), nil
}

// page is the newest limit entries before the given time, newest first.
func page(entries []AuditEntry, limit int, before time.Time) []AuditEntry {
	out := make([]AuditEntry, 0, min(limit, len(entries)))
	for i := len(entries) - 1; i >= 0 && len(out) < limit; i-- {
		if entries[i].Time.Before(before) {
			out = append(out, entries[i])
		}
	}
	return out
}
