package policy

import (
	"sort"
	"time"

	"github.com/logbook/logbook/events"
)

// SystemActor is the actor of proposals Logbook makes itself (the crash
// sweeper). No user can have this name: usernames start with a letter or
// digit. Only ingest's own identity may publish proposals under it.
const SystemActor = "_system"

// DefaultCrashAfter is how long a running run may stay quiet (no event, no
// heartbeat) before it is marked crashed, as in W&B.
const DefaultCrashAfter = 5 * time.Minute

// HeartbeatEvery is how quiet a run must have been for a heartbeat to be
// recorded in the log: a quarter of the crash timeout. Heartbeats in between
// are accepted and change nothing, so a client heartbeating every few
// seconds writes at most four events per timeout, and a run that logs
// metrics writes none (its rows are its liveness).
func HeartbeatEvery(crashAfter time.Duration) time.Duration { return crashAfter / 4 }

// RunRef names a run.
type RunRef struct {
	Entity, Project, Run string
	// LastActivity is when the run last showed a sign of life.
	LastActivity time.Time
}

// StaleRuns lists the running runs that have been quiet for at least the
// state's CrashAfter at time now, in a stable order: what the crash sweeper
// proposes to mark crashed.
func StaleRuns(s *State, now time.Time) []RunRef {
	var out []RunRef
	for _, p := range s.Projects {
		for _, r := range p.Runs {
			if r.Deleted || r.State != events.StateRunning || now.Sub(r.LastActivity) < s.CrashAfter {
				continue
			}
			out = append(out, RunRef{Entity: p.Entity, Project: p.Name, Run: r.ID, LastActivity: r.LastActivity})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Entity != b.Entity {
			return a.Entity < b.Entity
		}
		if a.Project != b.Project {
			return a.Project < b.Project
		}
		return a.Run < b.Run
	})
	return out
}

// decideSystem decides a proposal of the SystemActor. The system may only
// mark a running run crashed, and only when the run has been quiet for
// CrashAfter at the proposal's time: the decision depends on event times
// alone, so the log (not the sweeper's clock at replay) says why a run
// crashed.
func decideSystem(s *State, p events.Event) Decision {
	if pl, ok := p.Payload.(events.ArtifactDeletedV1); ok {
		return decideArtifactExpired(s, p, pl)
	}
	if _, ok := p.Payload.(events.RunCrashedV1); !ok {
		return reject(CodeForbidden, "the system actor may only propose %s or %s, not %s", events.RunCrashed, events.ArtifactDeleted, p.Type)
	}
	proj, ok := s.Project(p.Entity, p.Project)
	if !ok {
		return reject(CodeProjectNotFound, "project %s/%s does not exist", p.Entity, p.Project)
	}
	run := proj.Runs[p.Run]
	if run == nil || run.Deleted {
		return reject(CodeRunNotFound, "run %q does not exist in %s/%s", p.Run, p.Entity, p.Project)
	}
	if run.State != events.StateRunning {
		return accept() // already crashed (another sweeper) or ended: nothing to do
	}
	if quiet := p.Time.Sub(run.LastActivity); quiet < s.CrashAfter {
		return reject(CodeRunAlive, "run %q was active %s before this proposal; it crashes after %s without activity", p.Run, quiet.Round(time.Millisecond), s.CrashAfter)
	}
	lastSeen := float64(run.LastActivity.UnixNano()) / 1e9
	return accept(events.Event{Entity: p.Entity, Project: p.Project, Run: p.Run, Payload: events.RunCrashedV1{LastSeen: lastSeen}})
}

// decideHeartbeat records a heartbeat when the run has been quiet for
// HeartbeatEvery, or when it had been marked crashed (it is alive after
// all); otherwise the heartbeat is accepted and changes nothing.
func decideHeartbeat(pr *proposal, _ events.RunHeartbeatRecordedV1) Decision {
	run := pr.run
	switch run.State {
	case events.StateCrashed:
		return accept(pr.in(events.RunHeartbeatRecordedV1{}))
	case events.StateRunning:
		if pr.p.Time.Sub(run.LastActivity) >= HeartbeatEvery(pr.s.CrashAfter) {
			return accept(pr.in(events.RunHeartbeatRecordedV1{}))
		}
		return accept()
	}
	return reject(CodeRunFinished, "run %q is %s; resume it before sending heartbeats", pr.p.Run, run.State)
}

// PendingArtifactTTL is how long a version may stay pending (created, never
// committed: its client died or gave up) before Logbook deletes it: twice
// an upload URL's life (24 hours), so no client still uploading loses it.
// Its bodies are then garbage unless a live version names them.
const PendingArtifactTTL = 48 * time.Hour

// PendingArtifact names a pending version.
type PendingArtifact struct {
	Entity, Project, ID string
	Created             time.Time
}

// StalePendingArtifacts lists the versions pending for PendingArtifactTTL
// at time now, in a stable order: what the sweeper proposes to delete.
func StalePendingArtifacts(s *State, now time.Time) []PendingArtifact {
	var out []PendingArtifact
	for _, a := range s.artifacts {
		if a.State != ArtifactPending || now.Sub(a.Created) < PendingArtifactTTL {
			continue
		}
		if _, ok := s.Project(a.Entity, a.Project); ok {
			out = append(out, PendingArtifact{Entity: a.Entity, Project: a.Project, ID: a.ID, Created: a.Created})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// decideArtifactExpired lets the system delete a version that has been
// pending for PendingArtifactTTL at the proposal's time (event times
// alone decide, as for crashes).
func decideArtifactExpired(s *State, p events.Event, pl events.ArtifactDeletedV1) Decision {
	a, proj := s.Artifact(pl.ArtifactID)
	if a == nil || proj.Entity != p.Entity || proj.Name != p.Project {
		return reject(CodeArtifactNotFound, "artifact %q does not exist in %s/%s", pl.ArtifactID, p.Entity, p.Project)
	}
	if a.State != ArtifactPending {
		return accept() // committed or deleted meanwhile: nothing to do
	}
	if age := p.Time.Sub(a.Created); age < PendingArtifactTTL {
		return reject(CodeForbidden, "artifact %q has been pending for %s; it expires after %s", a.ID, age.Round(time.Second), PendingArtifactTTL)
	}
	return accept(events.Event{Entity: p.Entity, Project: p.Project, Payload: events.ArtifactDeletedV1{ArtifactID: a.ID}})
}
