package policy

import (
	"hash/fnv"
	"strconv"

	"github.com/logbook/logbook/events"
)

// The rules of runs: starting one (past the project gate), and writing to
// one (past the run gate).

// decideRunStarted starts a run, or resumes it (resume=allow or must).
// The run id defaults to the proposal id, so a re-sent start is the same run.
func decideRunStarted(pr *proposal, pl events.RunStartedV1) Decision {
	if d, ok := need(pr.role, StartRun); !ok {
		return d
	}
	if pl.RunID == "" {
		pl.RunID = pr.p.ID
	}
	if err := validateRunFields(pl); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	switch pl.Resume {
	case "", "never", "allow", "must":
	default:
		return reject(CodeInvalid, "resume must be allow, must or never, not %q", pl.Resume)
	}
	proj := pr.proj
	if existing := proj.Runs[pl.RunID]; existing != nil {
		return resumeRun(pr, pl, existing)
	}
	if pl.Resume == "must" {
		return reject(CodeRunNotFound, "resume=must, but run %q does not exist in %s/%s", pl.RunID, proj.Entity, proj.Name)
	}
	if pl.Name == "" {
		pl.Name = DefaultRunName(pr.p.ID, len(proj.Runs)+1)
	}
	pl.Name = UniqueName(proj.Names, pl.Name)
	pl.Resume = ""
	ev := pr.in(pl)
	ev.Run = pl.RunID
	return accept(ev)
}

// resumeRun decides a start whose run id is taken.
func resumeRun(pr *proposal, pl events.RunStartedV1, existing *Run) Decision {
	proj := pr.proj
	if existing.Deleted {
		return reject(CodeRunExists, "run id %q was used by a deleted run in %s/%s", pl.RunID, proj.Entity, proj.Name)
	}
	if pl.Resume != "allow" && pl.Resume != "must" {
		return reject(CodeRunExists, "run id %q is already used in %s/%s (pass resume=allow to continue it)", pl.RunID, proj.Entity, proj.Name)
	}
	if existing.Owner != pr.actor.Username && !Allowed(pr.role, WriteAnyRun) {
		return reject(CodeRunNotYours, "run %q belongs to %q; only they or an Admin may resume it", pl.RunID, existing.Owner)
	}
	ev := pr.in(events.RunResumedV1{RunID: pl.RunID, Config: pl.Config})
	ev.Run = pl.RunID
	return accept(ev)
}

// decideMetrics keeps the rows after the run's last step; the others are
// counted as dropped (a re-sent batch). It reads the batch's header, not
// its values: a batch after the last step is appended as it came (same
// bytes), one up to it is dropped whole, and only a batch that straddles
// it has its kept rows' columns rebuilt.
func decideMetrics(pr *proposal, pl events.MetricsLoggedV2) Decision {
	if err := checkBatch(pl); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if !pr.run.open() {
		return reject(CodeRunFinished, "run %q is %s; it no longer accepts metrics (resume it to log more)", pr.p.Run, pr.run.State)
	}
	kept, dropped := pl.After(pr.run.LastStep)
	if kept.Len() == 0 {
		return Decision{Dropped: dropped}
	}
	d := accept(pr.in(kept))
	d.Dropped = dropped
	return d
}

func decideSummary(pr *proposal, pl events.SummaryUpdatedV1) Decision {
	if len(pl.Values) == 0 {
		return reject(CodeInvalid, "a summary update needs at least one value")
	}
	for k := range pl.Values {
		if err := events.ValidateMetricKey(k); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
	}
	return accept(pr.in(pl))
}

// decideRunFinished settles the final state: killed, or from the exit code
// when none is given.
func decideRunFinished(pr *proposal, pl events.RunFinishedV1) Decision {
	if !pr.run.open() {
		return reject(CodeRunFinished, "run %q is already %s", pr.p.Run, pr.run.State)
	}
	switch {
	case pl.State == events.StateKilled:
	case pl.State == "" && pl.ExitCode == 0:
		pl.State = events.StateFinished
	case pl.State == "":
		pl.State = events.StateFailed
	case pl.State != events.StateFinished && pl.State != events.StateFailed:
		return reject(CodeInvalid, "a run finishes as finished, failed or killed, not %q", pl.State)
	}
	return accept(pr.in(pl))
}

// decideRunCrashed refuses a user's crash: only the SystemActor proposes
// one (decideSystem).
func decideRunCrashed(pr *proposal, _ events.RunCrashedV1) Decision {
	return reject(CodeForbidden, "only Logbook's crash detector marks a run crashed (after %s without a heartbeat or a log)", pr.s.CrashAfter)
}

// decideRunUpdated drops a rename to the current name and makes a new
// name unique in the project.
func decideRunUpdated(pr *proposal, pl events.RunUpdatedV1) Decision {
	run := pr.run
	if pl.Name != nil {
		if err := events.ValidateRunName(*pl.Name); err != nil {
			return reject(CodeInvalid, "%v", err)
		}
		if *pl.Name == run.Name {
			pl.Name = nil
		} else {
			n := UniqueName(pr.proj.Names, *pl.Name)
			pl.Name = &n
		}
	}
	check := events.RunStartedV1{RunID: run.ID, Tags: append(append([]string{}, pl.AddTags...), pl.RemoveTags...), Config: pl.Config, Wandb: pl.Wandb}
	if pl.JobType != nil {
		check.JobType = *pl.JobType
	}
	if pl.Group != nil {
		check.Group = *pl.Group
	}
	if pl.Notes != nil {
		check.Notes = *pl.Notes
	}
	if err := validateRunFields(check); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if pr.proj.unchangedBy(run.ID, pl) {
		return accept() // nothing changes: nothing to append
	}
	return accept(pr.in(pl))
}

func decideRunDeleted(pr *proposal, pl events.RunDeletedV1) Decision {
	return accept(pr.in(pl))
}

func decideLines(pr *proposal, pl events.RunLinesWrittenV1) Decision {
	if !pr.run.open() {
		return reject(CodeRunFinished, "run %q is %s; it no longer accepts output (resume it to write more)", pr.p.Run, pr.run.State)
	}
	if err := validateLines(pl); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if err := pr.proj.checkLineOffset(pr.run.ID, pl); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	return accept(pr.in(pl))
}

// open reports whether the run accepts metrics and output: it is running,
// or crashed (a crashed run that writes again is running).
func (r *Run) open() bool {
	return r.State == events.StateRunning || r.State == events.StateCrashed
}

// UniqueName returns name, or name-2, name-3, ... the first that no run of
// the project uses.
func UniqueName(taken map[string]string, name string) string {
	if _, ok := taken[name]; !ok {
		return name
	}
	for i := 2; ; i++ {
		n := name + "-" + strconv.Itoa(i)
		if _, ok := taken[n]; !ok {
			return n
		}
	}
}

var (
	adjectives = []string{"amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fancy", "gentle",
		"golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "misty", "noble", "proud",
		"quiet", "rapid", "silver", "smooth", "snowy", "solar", "stellar", "sunny", "swift", "vivid"}
	nouns = []string{"aurora", "breeze", "brook", "canyon", "cloud", "comet", "dawn", "dew", "dream", "field",
		"firefly", "forest", "frost", "galaxy", "glade", "haze", "lake", "leaf", "meadow", "moon",
		"night", "ocean", "pine", "planet", "rain", "river", "sky", "star", "sun", "wave"}
)

// DefaultRunName returns a readable W&B-style name, "adjective-noun-n", chosen
// from the proposal id so the same proposal always gets the same name.
func DefaultRunName(seed string, n int) string {
	h := fnv.New32a()
	h.Write([]byte(seed))
	x := h.Sum32()
	return adjectives[x%uint32(len(adjectives))] + "-" + nouns[(x/uint32(len(adjectives)))%uint32(len(nouns))] + "-" + strconv.Itoa(n)
}
