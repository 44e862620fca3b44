// Package query is Logbook's read side: an authorized read service over the
// projections (reachable in-process, or over NATS through package bus) and
// the lifecycle of the read model behind it (follow the log, rebuild,
// digest, switch), with the event source passed in.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// Ops of a read request.
const (
	OpWhoAmI   = "whoami"
	OpProjects = "projects"
	OpProject  = "project"
	OpMembers  = "members"
	OpRuns     = "runs"
	OpRun      = "run"
	OpHistory  = "history"
	OpLines    = "lines"
	OpAsOf     = "asof"
)

// Request is one read. KeyHash is the SHA-256 of the caller's API key: the
// raw key never leaves the HTTP edge.
type Request struct {
	KeyHash string                `json:"key_hash"`
	Op      string                `json:"op"`
	Entity  string                `json:"entity,omitempty"`
	Project string                `json:"project,omitempty"`
	Run     string                `json:"run,omitempty"`
	Filter  projections.RunFilter `json:"filter"`
	Metric  string                `json:"metric,omitempty"`
	MinStep int64                 `json:"min_step,omitempty"`
	MaxStep int64                 `json:"max_step,omitempty"`
	Limit   int                   `json:"limit,omitempty"`
	// File and Offset select a run's text file and the first line of an
	// OpLines read.
	File   string `json:"file,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// Collection and Version select an artifact collection and one of its
	// versions (vN, an alias or a version id); OpArtifact with a Version
	// and no Entity, Project or Collection looks a version up by id alone.
	Collection string `json:"collection,omitempty"`
	Version    string `json:"version,omitempty"`
	// MinSeq makes the read wait until the read model has applied this
	// stream sequence (read-your-writes after a write returned it).
	MinSeq uint64 `json:"min_seq,omitempty"`
	// Runs carries the parameters of run search, downsampling and export.
	Runs *RunsRequest `json:"runs,omitempty"`
	// AsOfSeq and AsOfTime bound an OpAsOf read: the project as it was at
	// that stream sequence and/or time.
	AsOfSeq  uint64    `json:"asof_seq,omitempty"`
	AsOfTime time.Time `json:"asof_time,omitzero"`
}

// Reader answers read requests with a JSON document.
type Reader interface {
	Read(ctx context.Context, r Request) (json.RawMessage, error)
}

// Service authorizes and answers reads from a read model.
type Service struct {
	Store *projections.Store
	// MaxWait bounds how long a read waits for MinSeq.
	MaxWait time.Duration
	// Log and Subjects let OpAsOf replay a project's events (time
	// travel); without them it answers 501.
	Log      projections.LogReader
	Subjects events.Subjects
}

// RunView is a run as the API shows it.
type RunView struct {
	projections.Run
	Summary map[string]events.Value `json:"summary"`
}

// ProjectView is a project as the API shows it to a caller.
type ProjectView struct {
	projections.Project
	Role events.Role `json:"role"`
}

// Row is a history row: one step with the values of every metric logged at it.
type Row struct {
	Step   int64                   `json:"step"`
	Time   float64                 `json:"time"`
	Values map[string]events.Value `json:"values"`
}

// Read implements Reader.
func (s *Service) Read(ctx context.Context, r Request) (json.RawMessage, error) {
	v, err := s.read(ctx, r)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func (s *Service) read(ctx context.Context, r Request) (any, error) {
	if r.MinSeq > 0 {
		wait := s.MaxWait
		if wait == 0 {
			wait = 10 * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := s.Store.WaitSeq(wctx, r.MinSeq)
		cancel()
		if err != nil {
			return nil, errs.New(errs.Unavailable, "not_ready", "the read model has not caught up yet: %v", err)
		}
	}
	user, err := s.Store.UserByKeyHash(r.KeyHash)
	if errors.Is(err, projections.ErrNotFound) {
		return nil, errs.New(errs.Unauthenticated, "unauthenticated", "invalid or revoked API key")
	}
	if err != nil {
		return nil, err
	}
	switch r.Op {
	case OpWhoAmI:
		return user, nil
	case OpProjects:
		return s.projects(user.Username)
	}
	if err := s.artifactProject(user.Username, &r); err != nil {
		return nil, err
	}
	proj, role, err := s.authorize(user.Username, r.Entity, r.Project)
	if err != nil {
		return nil, err
	}
	switch r.Op {
	case OpProject:
		return ProjectView{Project: proj, Role: role}, nil
	case OpMembers:
		return members(proj), nil
	case OpRuns:
		runs, err := s.Store.Runs(r.Entity, r.Project, r.Filter)
		if err != nil {
			return nil, err
		}
		out := make([]RunView, len(runs))
		for i := range runs {
			out[i] = RunView{Run: runs[i], Summary: runs[i].Summary()}
		}
		return out, nil
	case OpRun:
		run, err := s.run(r)
		if err != nil {
			return nil, err
		}
		return RunView{Run: run, Summary: run.Summary()}, nil
	case OpHistory:
		return s.history(r)
	case OpLines:
		return s.lines(r)
	case OpAsOf:
		return s.asOf(ctx, r, role)
	}
	if v, ok, err := s.readRuns(ctx, r); ok {
		return v, err
	}
	if v, ok, err := s.readArtifacts(user.Username, r); ok {
		return v, err
	}
	return nil, errs.New(errs.Invalid, "invalid", "unknown read operation %q", r.Op)
}

// authorize returns the project if the user may read it. A project the user
// cannot see is reported as not found, so its existence does not leak.
func (s *Service) authorize(user, entity, project string) (projections.Project, events.Role, error) {
	if err := events.ValidateEntity(entity); err != nil {
		return projections.Project{}, "", errs.New(errs.Invalid, "invalid", "%v", err)
	}
	if err := events.ValidateProject(project); err != nil {
		return projections.Project{}, "", errs.New(errs.Invalid, "invalid", "%v", err)
	}
	proj, err := s.Store.Project(entity, project)
	notFound := errs.New(errs.NotFound, "project_not_found", "project %s/%s does not exist or you are not a member of it", entity, project)
	if errors.Is(err, projections.ErrNotFound) {
		return proj, "", notFound
	}
	if err != nil {
		return proj, "", err
	}
	teamRole, err := s.Store.TeamRole(entity, user)
	if err != nil {
		return proj, "", err
	}
	role := policy.EffectiveRole(teamRole, proj.Members[user])
	if !policy.Allowed(role, policy.ReadProject) {
		return proj, "", notFound
	}
	return proj, role, nil
}

func (s *Service) projects(user string) ([]ProjectView, error) {
	all, teams, err := s.Store.Projects(user)
	if err != nil {
		return nil, err
	}
	out := []ProjectView{}
	for _, p := range all {
		role := policy.EffectiveRole(teams[p.Entity], p.Members[user])
		if policy.Allowed(role, policy.ReadProject) {
			out = append(out, ProjectView{Project: p, Role: role})
		}
	}
	return out, nil
}

// Member is one project member.
type Member struct {
	Username string      `json:"username,omitempty"`
	Email    string      `json:"email,omitempty"`
	Role     events.Role `json:"role"`
	Pending  bool        `json:"pending,omitempty"`
}

func members(p projections.Project) []Member {
	out := []Member{}
	for u, r := range p.Members {
		out = append(out, Member{Username: u, Role: r})
	}
	for e, r := range p.Pending {
		out = append(out, Member{Email: e, Role: r, Pending: true})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pending != out[j].Pending {
			return !out[i].Pending
		}
		return out[i].Username+out[i].Email < out[j].Username+out[j].Email
	})
	return out
}

func (s *Service) run(r Request) (projections.Run, error) {
	if err := events.ValidateRunID(r.Run); err != nil {
		return projections.Run{}, errs.New(errs.Invalid, "invalid", "%v", err)
	}
	run, err := s.Store.Run(r.Entity, r.Project, r.Run)
	if errors.Is(err, projections.ErrNotFound) {
		return run, errs.New(errs.NotFound, "run_not_found", "run %q does not exist in %s/%s", r.Run, r.Entity, r.Project)
	}
	return run, err
}

// MaxHistoryPoints bounds one history answer; page with min_step.
const MaxHistoryPoints = 1_000_000

func (s *Service) history(r Request) (any, error) {
	run, err := s.run(r)
	if err != nil {
		return nil, err
	}
	if r.MinStep < 0 || (r.MaxStep != 0 && r.MaxStep < r.MinStep) {
		return nil, errs.New(errs.Invalid, "invalid", "step range [%d, %d] is empty or negative", r.MinStep, r.MaxStep)
	}
	limit := r.Limit
	if limit <= 0 || limit > MaxHistoryPoints {
		limit = MaxHistoryPoints
	}
	q := projections.HistoryRange{Metric: r.Metric, MinStep: r.MinStep, MaxStep: r.MaxStep, Limit: limit}
	if r.Metric != "" {
		pts := []projections.Point{}
		err := s.Store.History(r.Entity, r.Project, run.ID, q, func(p projections.Point) bool {
			pts = append(pts, p)
			return true
		})
		return pts, err
	}
	// All metrics, merged into rows by step.
	metrics, err := s.Store.Metrics(r.Entity, r.Project, run.ID)
	if err != nil {
		return nil, err
	}
	rows := map[int64]*Row{}
	for _, m := range metrics {
		q.Metric = m
		err := s.Store.History(r.Entity, r.Project, run.ID, q, func(p projections.Point) bool {
			row := rows[p.Step]
			if row == nil {
				row = &Row{Step: p.Step, Time: p.Time, Values: map[string]events.Value{}}
				rows[p.Step] = row
			}
			row.Values[m] = p.Value
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]*Row, 0, len(rows))
	for _, row := range rows {
		out = append(out, row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// MaxLines bounds one lines answer; page with offset.
const MaxLines = 100_000

// Lines is a page of a run's text file.
type Lines struct {
	File  string             `json:"file"`
	Count int64              `json:"count"`
	Lines []projections.Line `json:"lines"`
}

func (s *Service) lines(r Request) (any, error) {
	run, err := s.run(r)
	if err != nil {
		return nil, err
	}
	if r.File == "" {
		return nil, errs.New(errs.Invalid, "invalid", "name the file to read with ?file=, e.g. output.log")
	}
	if r.Offset < 0 {
		return nil, errs.New(errs.Invalid, "invalid", "offset must not be negative")
	}
	limit := r.Limit
	if limit <= 0 || limit > MaxLines {
		limit = MaxLines
	}
	out := Lines{File: r.File, Count: run.Lines[r.File], Lines: []projections.Line{}}
	err = s.Store.Lines(r.Entity, r.Project, run.ID, r.File, r.Offset, limit, func(l projections.Line) bool {
		out.Lines = append(out.Lines, l)
		return true
	})
	return out, err
}
