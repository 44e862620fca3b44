package ingest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/httpx"
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
	Decider  *Decider
	Proposer *Proposer
	// CrashAfter is the crash timeout; Every how often to sweep (default a
	// tenth of CrashAfter, between 100ms and 30s).
	CrashAfter time.Duration
	Every      time.Duration
	Log        *slog.Logger

	started time.Time
}

// Run sweeps until ctx ends. Runs are given CrashAfter from the sweeper's
// start before they may crash: while ingest was down nobody could log, and
// that silence is not the training job's.
func (s *Sweeper) Run(ctx context.Context) error {
	select {
	case <-s.Decider.Ready():
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
	s.Decider.View(func(st *policy.State) { stale = policy.StaleRuns(st, now) })
	crashed := 0
	var errs []error
	for _, r := range stale {
		if !s.started.IsZero() && now.Sub(s.started) < s.CrashAfter {
			break
		}
		p := events.Event{ID: events.NewID(now), Actor: policy.SystemActor, Time: now.UTC(),
			Entity: r.Entity, Project: r.Project, Run: r.Run, Payload: events.RunCrashedV1{}}
		out, err := s.Proposer.Propose(ctx, p, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.Rejection != nil {
			// The run logged in the meantime (run_alive) or is gone.
			s.log().Debug("crash not recorded", "run", r.Run, "code", out.Rejection.Code, "reason", out.Rejection.Message)
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

// Heartbeat reports that a run's process is alive on behalf of actor (also
// used by the W&B adapter). The policy records a heartbeat only when the run
// has been quiet for a quarter of the crash timeout (or was marked crashed);
// a heartbeat that would record nothing is answered from the current state
// without a proposal, so frequent heartbeats cost no log traffic.
func (h *Edge) Heartbeat(ctx context.Context, actor, id, entity, project, run string) (Outcome, error) {
	p := events.Event{ID: id, Actor: actor, Time: time.Now().UTC(), Entity: entity, Project: project, Run: run,
		Payload: events.RunHeartbeatRecordedV1{}}
	var dry policy.Decision
	var state string
	h.Decider.View(func(s *policy.State) {
		dry = policy.Decide(s, p)
		if proj, ok := s.Project(entity, project); ok && proj.Runs[run] != nil {
			state = proj.Runs[run].State
		}
	})
	if dry.Rejection == nil && len(dry.Events) == 0 {
		return Outcome{Accepted: true, Run: run, RunState: state}, nil
	}
	out, err := h.Proposer.Propose(ctx, p, true)
	if err != nil {
		if errors.Is(err, ErrUndecided) {
			return out, httpx.Errorf(503, "undecided", "%v", err)
		}
		return out, err
	}
	if out.Rejection != nil {
		return out, RejectionError(out.Rejection)
	}
	return out, nil
}

func (h *Edge) heartbeat(c *call) (int, any, error) {
	entity, project, run, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.Heartbeat(c.r.Context(), c.actor.Username, c.id, entity, project, run)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}
