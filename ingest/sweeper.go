package ingest

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// SetCrashAfter sets how long a running run may stay quiet before the
// policy accepts marking it crashed (policy.DefaultCrashAfter unless set).
// Call it before Run.
func (d *Decider) SetCrashAfter(after time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.CrashAfter = after
}

// Sweeper is ingest's crash detector. It scans the policy state for running
// runs that have been quiet (no event, no recorded heartbeat) for the crash
// timeout and proposes RunCrashed for them as policy.SystemActor. The policy
// decides from event times alone, so the log says why a run crashed and a
// replay reproduces it; several ingest processes may sweep at once (the
// second proposal for a run changes nothing).
type Sweeper struct {
	Ingest *Service
	// CrashAfter is the crash timeout; Every how often to sweep (default a
	// tenth of CrashAfter, between 100ms and 30s).
	CrashAfter time.Duration
	Every      time.Duration
	Log        *slog.Logger

	started time.Time
	expired time.Time // last ExpireArtifacts
}

// Run sweeps until ctx ends. Runs are given CrashAfter from the sweeper's
// start before they may crash: while ingest was down nobody could log, and
// that silence is not the training job's.
func (s *Sweeper) Run(ctx context.Context) error {
	select {
	case <-s.Ingest.Ready():
	case <-ctx.Done():
		return nil
	}
	s.started = time.Now()
	every := s.Every
	if every <= 0 {
		every = min(max(s.CrashAfter/10, 100*time.Millisecond), 30*time.Second)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := s.SweepOnce(ctx, now); err != nil && ctx.Err() == nil {
				s.log().Warn("crash sweep", "err", err)
			}
			if now.Sub(s.expired) >= time.Minute {
				s.expired = now
				if _, err := s.ExpireArtifacts(ctx, now); err != nil && ctx.Err() == nil {
					s.log().Warn("artifact expiry", "err", err)
				}
			}
		}
	}
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// SweepOnce proposes RunCrashed, with time now, for every run quiet for the
// crash timeout at now, waits for each decision and returns how many runs it
// marked crashed.
func (s *Sweeper) SweepOnce(ctx context.Context, now time.Time) (int, error) {
	var stale []policy.RunRef
	s.Ingest.Decider.View(func(st *policy.State) { stale = policy.StaleRuns(st, now) })
	crashed := 0
	var errs []error
	for _, r := range stale {
		if !s.started.IsZero() && now.Sub(s.started) < s.CrashAfter {
			break
		}
		p := events.Event{ID: events.NewID(now), Actor: policy.SystemActor, Time: now.UTC(),
			Entity: r.Entity, Project: r.Project, Run: r.Run, Payload: events.RunCrashedV1{}}
		out, err := s.Ingest.Submit(ctx, p, Wait)
		if out.Rejection != nil {
			// The run logged in the meantime (run_alive) or is gone.
			s.log().Debug("crash not recorded", "run", r.Run, "code", out.Rejection.Code, "reason", out.Rejection.Message)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.Seq > 0 {
			crashed++
			s.log().Info("run crashed: no heartbeat or log", "entity", r.Entity, "project", r.Project, "run", r.Run,
				"last_activity", r.LastActivity, "timeout", s.CrashAfter)
		}
	}
	return crashed, errors.Join(errs...)
}

// ExpireArtifacts proposes, with time now, the deletion of every artifact
// version pending for policy.PendingArtifactTTL at now (a client that
// created it and never committed), and returns how many it deleted. Their
// file bodies are then reclaimed by garbage collection unless a live
// version names them.
func (s *Sweeper) ExpireArtifacts(ctx context.Context, now time.Time) (int, error) {
	var stale []policy.PendingArtifact
	s.Ingest.Decider.View(func(st *policy.State) { stale = policy.StalePendingArtifacts(st, now) })
	n := 0
	var errs []error
	for _, a := range stale {
		p := events.Event{ID: events.NewID(now), Actor: policy.SystemActor, Time: now.UTC(),
			Entity: a.Entity, Project: a.Project, Payload: events.ArtifactDeletedV1{ArtifactID: a.ID}}
		out, err := s.Ingest.Submit(ctx, p, Wait)
		if out.Rejection != nil {
			s.log().Debug("artifact not expired", "artifact", a.ID, "code", out.Rejection.Code, "reason", out.Rejection.Message)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.Seq > 0 {
			n++
			s.log().Info("pending artifact version expired", "entity", a.Entity, "project", a.Project, "artifact", a.ID, "created", a.Created)
		}
	}
	return n, errors.Join(errs...)
}
