package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// Transactions and Badger's limit. Badger refuses a transaction larger than
// 15% of its memtable (ErrTxnTooBig), and the read model's memtables are
// small (see Open), so the fold commits in two ways:
//
//   - at an event boundary, once the transaction holds half the limit (or
//     maxCachedDocs documents): the cached documents and the sequence of the
//     last event go in with the history, in the same transaction;
//   - mid-event, when Badger says the transaction is full (one event alone
//     larger than the limit, or the documents do not fit beside the history):
//     an overflow commit of the history and line writes only, never of a
//     cached document or the sequence. Every such write is idempotent given
//     the documents: lines and whole chunks are put at keys derived from the
//     event, and the open chunk is rewritten from the run document's point
//     count (appendHistory drops any point past it). A crash after an
//     overflow commit re-folds the events from the committed sequence over
//     the documents they started from and writes the same bytes.
//
// The documents of one flush (runs, projects, teams touched since the last
// one) must fit in one transaction with the sequence: the fold flushes when
// it caches maxCachedDocs of them.
const maxCachedDocs = 256

// fold applies events to the read model through one write transaction at a
// time, caching the documents it touches.
type fold struct {
	db   *badger.DB
	txn  *badger.Txn
	size int
	// limit is Badger's transaction size for this database; the fold
	// flushes at an event boundary past half of it.
	limit     int
	overflows int    // overflow commits (for tests)
	last      uint64 // sequence of the last event folded into txn

	runs     map[string]*Run
	projects map[string]*Project
	teams    map[string]*Team

	idx *runIndex // told about every committed run document (may be nil)
}

func newFold(db *badger.DB) *fold {
	return &fold{db: db, txn: db.NewTransaction(true), limit: txnLimit(db),
		runs: map[string]*Run{}, projects: map[string]*Project{}, teams: map[string]*Team{}}
}

// txnLimit is the size at which Badger refuses a transaction (15% of a
// memtable, as badger.Open computes it).
func txnLimit(db *badger.DB) int { return int(db.Opts().MemTableSize * 15 / 100) }

// set writes a history chunk, a line or another document that is not
// cached (see the comment on maxCachedDocs): when Badger finds the
// transaction full, what it holds is committed without the sequence.
func (f *fold) set(key, val []byte) error {
	err := f.txn.Set(key, val)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = f.overflow(); err == nil {
			err = f.txn.Set(key, val)
		}
	}
	if err == nil {
		f.size += len(key) + len(val) + 32
	}
	return err
}

// overflow commits the transaction's writes without documents or sequence
// and opens a new transaction (see maxCachedDocs for why that is safe).
func (f *fold) overflow() error {
	if err := f.txn.Commit(); err != nil {
		return fmt.Errorf("commit read model (overflow): %w", err)
	}
	f.txn = f.db.NewTransaction(true)
	f.size = 0
	f.overflows++
	return nil
}

func (f *fold) setJSON(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return f.set(key, b)
}

// flush writes the cached documents and seq into the transaction and
// commits it.
func (f *fold) flush(seq uint64) error {
	docs, size, err := f.documents()
	if err != nil {
		return err
	}
	if f.size+size+256 >= f.limit && f.size > 0 {
		// The documents and the sequence must commit together: make room.
		if err := f.overflow(); err != nil {
			return err
		}
	}
	for _, d := range docs {
		if err := f.txn.Set(d.key, d.val); err != nil {
			return fmt.Errorf("write %d documents (%d bytes) at seq %d: %w", len(docs), size, seq, err)
		}
	}
	if err := f.txn.Set(keySeq, putUint(seq)); err != nil {
		return err
	}
	if err := f.txn.Set(keyVersion, putUint(Version)); err != nil {
		return err
	}
	if err := f.txn.Commit(); err != nil {
		return fmt.Errorf("commit read model at seq %d: %w", seq, err)
	}
	f.idx.update(f.runs, f.projects, seq)
	f.txn = f.db.NewTransaction(true)
	f.size = 0
	clear(f.runs)
	clear(f.projects)
	clear(f.teams)
	return nil
}

type doc struct{ key, val []byte }

// documents encodes the cached documents and returns them with their size.
func (f *fold) documents() ([]doc, int, error) {
	docs := make([]doc, 0, len(f.runs)+len(f.projects)+len(f.teams))
	size := 0
	add := func(k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		docs = append(docs, doc{[]byte(k), b})
		size += len(k) + len(b) + 32
		return nil
	}
	for k, r := range f.runs {
		if r != nil {
			if err := add(k, r); err != nil {
				return nil, 0, err
			}
		}
	}
	for k, p := range f.projects {
		if p != nil {
			if err := add(k, p); err != nil {
				return nil, 0, err
			}
		}
	}
	for k, t := range f.teams {
		if err := add(k, t); err != nil {
			return nil, 0, err
		}
	}
	return docs, size, nil
}

func (f *fold) commit(seq uint64) error {
	defer f.txn.Discard()
	return f.flush(seq)
}

func (f *fold) run(e, p, id string) (*Run, error) {
	k := string(runKey(e, p, id))
	if r, ok := f.runs[k]; ok {
		return r, nil
	}
	var r Run
	if err := getJSON(f.txn, []byte(k), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if r.Metrics == nil {
		r.Metrics = map[string]*MetricSummary{}
	}
	f.runs[k] = &r
	return &r, nil
}

func (f *fold) project(e, p string) (*Project, error) {
	k := string(projectKey(e, p))
	if pr, ok := f.projects[k]; ok {
		return pr, nil
	}
	var pr Project
	if err := getJSON(f.txn, []byte(k), &pr); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if pr.Members == nil {
		pr.Members = map[string]events.Role{}
	}
	if pr.Pending == nil {
		pr.Pending = map[string]events.Role{}
	}
	f.projects[k] = &pr
	return &pr, nil
}

func (f *fold) team(name string) (*Team, error) {
	k := string(teamKey(name))
	if t, ok := f.teams[k]; ok {
		return t, nil
	}
	var t Team
	if err := getJSON(f.txn, []byte(k), &t); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if t.Members == nil {
		t.Members = map[string]events.TeamRole{}
	}
	f.teams[k] = &t
	return &t, nil
}

// applyAt folds one event stored at seq, committing first when the
// transaction is full.
func (f *fold) applyAt(seq uint64, e events.Event) error {
	deletion := e.Type == events.ProjectDeleted || e.Type == events.RunDeleted
	full := f.size > f.limit/2 || len(f.runs)+len(f.projects)+len(f.teams) >= maxCachedDocs
	if (full || deletion) && f.last > 0 {
		if err := f.flush(f.last); err != nil {
			return err
		}
	}
	if err := f.apply(e); err != nil {
		return err
	}
	f.last = seq
	return nil
}

func (f *fold) apply(e events.Event) error {
	switch pl := e.Payload.(type) {
	case events.UserCreatedV1:
		return f.setJSON(userKey(pl.Username), User{Username: pl.Username, Email: pl.Email,
			DisplayName: pl.DisplayName, SiteAdmin: pl.SiteAdmin, Service: pl.Service, Owner: pl.Owner})
	case events.KeyCreatedV1:
		return f.set(keyHashKey(pl.Hash), []byte(pl.Username+"\x00"+pl.KeyID))
	case events.KeyRevokedV1:
		return f.revokeKey(pl)
	case events.TeamCreatedV1:
		f.teams[string(teamKey(pl.Name))] = &Team{Name: pl.Name, Members: map[string]events.TeamRole{}}
		return nil
	case events.TeamMemberJoinedV1:
		t, err := f.team(e.Entity)
		if err != nil || t == nil {
			return err
		}
		t.Members[pl.Username] = pl.Role
		return nil
	case events.ProjectCreatedV1:
		f.projects[string(projectKey(e.Entity, e.Project))] = &Project{Entity: e.Entity, Name: e.Project,
			Description: pl.Description, CreatedBy: e.Actor, CreatedAt: e.Time,
			Members: map[string]events.Role{e.Actor: events.RoleAdmin}, Pending: map[string]events.Role{}}
		return nil
	case events.ProjectDeletedV1:
		return f.deleteProject(e.Entity, e.Project)
	}

	p, err := f.project(e.Entity, e.Project)
	if err != nil || p == nil {
		return err // events of a deleted project change nothing
	}
	if isArtifactEvent(e.Type) {
		return f.applyArtifact(e)
	}
	switch pl := e.Payload.(type) {
	case events.MemberInvitedV1:
		if pl.Username == "" && pl.Email != "" {
			p.Pending[strings.ToLower(pl.Email)] = pl.Role
		}
		return nil
	case events.InviteRevokedV2:
		delete(p.Pending, strings.ToLower(pl.Email))
		return nil
	case events.MemberJoinedV1:
		p.Members[pl.Username] = pl.Role
		var u User
		if err := getJSON(f.txn, userKey(pl.Username), &u); err == nil && u.Email != "" {
			delete(p.Pending, strings.ToLower(u.Email))
		}
		return nil
	case events.RoleChangedV1:
		p.Members[pl.Username] = pl.Role
		return nil
	case events.MemberRemovedV1:
		delete(p.Members, pl.Username)
		return nil
	case events.RunStartedV1:
		p.RunCount++
		cfg := pl.Config
		if len(cfg) == 0 {
			cfg = json.RawMessage("{}")
		}
		tags := slices.Clone(pl.Tags)
		if tags == nil {
			tags = []string{}
		}
		f.runs[string(runKey(e.Entity, e.Project, pl.RunID))] = &Run{ID: pl.RunID, Entity: e.Entity, Project: e.Project,
			Name: pl.Name, Owner: e.Actor, State: events.StateRunning, JobType: pl.JobType, Group: pl.Group,
			Notes: pl.Notes, Tags: tags, Config: cfg, CreatedAt: e.Time, UpdatedAt: e.Time, LastStep: -1,
			Metrics: map[string]*MetricSummary{}, Wandb: pl.Wandb}
		return nil
	}

	r, err := f.run(e.Entity, e.Project, e.Run)
	if err != nil || r == nil {
		return err
	}
	r.UpdatedAt = e.Time
	switch pl := e.Payload.(type) {
	case events.MetricsLoggedV2:
		return f.logMetrics(r, pl)
	case events.SummaryUpdatedV1:
		if r.Explicit == nil {
			r.Explicit = map[string]events.Value{}
		}
		for k, v := range pl.Values {
			r.Explicit[k] = v
		}
	case events.RunFinishedV1:
		r.State = pl.State
		code := pl.ExitCode
		r.ExitCode = &code
	case events.RunCrashedV1:
		r.State = events.StateCrashed
	case events.RunResumedV1:
		r.State = events.StateRunning
		r.ExitCode = nil
		if len(pl.Config) > 0 {
			r.Config = mergeConfig(r.Config, pl.Config)
		}
	case events.RunUpdatedV1:
		applyRunUpdate(r, pl)
	case events.RunLinesWrittenV1:
		return f.writeLines(r, pl)
	case events.RunStreamReceivedV1:
		receiveLines(r, pl)
	case events.RunDeletedV1:
		k := string(runKey(e.Entity, e.Project, e.Run))
		f.runs[k] = nil
		p.RunCount--
		if err := f.txn.Delete([]byte(k)); err != nil {
			return err
		}
		for _, prefix := range [][]byte{histRunPrefix(e.Entity, e.Project, e.Run), artInPrefix(e.Entity, e.Project, e.Run),
			artOutPrefix(e.Entity, e.Project, e.Run)} {
			if err := f.deletePrefix(prefix); err != nil {
				return err
			}
		}
		return f.deletePrefix(linePrefix(e.Entity, e.Project, e.Run))
	}
	return nil
}

// receiveLines records which history lines of a W&B stream arrived and
// the gaps the others leave.
func receiveLines(r *Run, pl events.RunStreamReceivedV1) {
	var gaps []events.LineGap
	if r.DataQuality != nil {
		gaps = r.DataQuality.HistoryGaps
	}
	var delta int64
	r.HistoryLines, gaps, delta = events.ReceiveLines(r.HistoryLines, gaps, r.LastStep, pl)
	if r.DataQuality == nil && delta == 0 && len(gaps) == 0 {
		return
	}
	if r.DataQuality == nil {
		r.DataQuality = &DataQuality{}
	}
	r.DataQuality.MissingHistoryLines += delta
	r.DataQuality.HistoryGaps = gaps
	if r.DataQuality.HistoryGaps == nil {
		r.DataQuality.HistoryGaps = []events.LineGap{}
	}
}

// writeLines stores lines at their line numbers, replacing what is there.
func (f *fold) writeLines(r *Run, pl events.RunLinesWrittenV1) error {
	prefix := lineFilePrefix(r.Entity, r.Project, r.ID, pl.File)
	for i, l := range pl.Lines {
		if err := f.set(stepKey(prefix, pl.Offset+int64(i)), []byte(l)); err != nil {
			return err
		}
	}
	if r.Lines == nil {
		r.Lines = map[string]int64{}
	}
	if end := pl.Offset + int64(len(pl.Lines)); end > r.Lines[pl.File] {
		r.Lines[pl.File] = end
	}
	return nil
}

func applyRunUpdate(r *Run, pl events.RunUpdatedV1) {
	if pl.Name != nil {
		r.Name = *pl.Name
	}
	if pl.JobType != nil {
		r.JobType = *pl.JobType
	}
	if pl.Group != nil {
		r.Group = *pl.Group
	}
	if pl.Notes != nil {
		r.Notes = *pl.Notes
	}
	for _, t := range pl.AddTags {
		if !slices.Contains(r.Tags, t) {
			r.Tags = append(r.Tags, t)
		}
	}
	r.Tags = slices.DeleteFunc(r.Tags, func(t string) bool { return slices.Contains(pl.RemoveTags, t) })
	if len(pl.Config) > 0 {
		r.Config = mergeConfig(r.Config, pl.Config)
	}
	if len(pl.Wandb) > 0 {
		r.Wandb = mergeConfig(r.Wandb, pl.Wandb)
	}
}

// mergeConfig sets the top-level keys of upd in base.
func mergeConfig(base, upd json.RawMessage) json.RawMessage {
	var b, u map[string]json.RawMessage
	if json.Unmarshal(base, &b) != nil || b == nil {
		b = map[string]json.RawMessage{}
	}
	if json.Unmarshal(upd, &u) != nil {
		return base
	}
	for k, v := range u {
		b[k] = v
	}
	out, _ := json.Marshal(b) // map keys are sorted: deterministic
	return out
}

// logMetrics appends a batch to the history of each of its metrics (see
// appendHistory): the rows of a batch have strictly increasing steps, all
// after the run's previous last step, so chunks never overlap and a step
// range is one contiguous key range.
//
// The batch comes in columns: each metric's column is decoded straight into
// its points and summary (no map per row); keys are sorted, so histories
// are appended in the same order as before columns.
func (f *fold) logMetrics(r *Run, pl events.MetricsLoggedV2) error {
	n := pl.Len()
	if n == 0 {
		return nil
	}
	steps := pl.Steps(make([]int64, 0, n))
	for j, k := range pl.Keys() {
		c := pl.Column(j)
		pts := make([]Point, 0, c.Count())
		for row, i := 0, 0; row < n; row++ {
			if c.Present(row) {
				pts = append(pts, Point{Step: steps[row], Time: pl.Time(row), Value: events.Value(c.Value(i))})
				i++
			}
		}
		m := r.Metrics[k]
		if m == nil {
			m = &MetricSummary{Min: pts[0].Value, Max: pts[0].Value}
			r.Metrics[k] = m
		}
		summarize(m, pts)
		if err := f.appendHistory(histMetricPrefix(r.Entity, r.Project, r.ID, k), m, pts); err != nil {
			return err
		}
	}
	r.Rows += int64(n)
	if last := pl.Last(); last > r.LastStep {
		r.LastStep = last
	}
	r.State = events.StateRunning
	return nil
}

// summarize folds points into a metric's summary: the last value and its
// step, and the min and max ignoring NaN.
func summarize(m *MetricSummary, pts []Point) {
	for _, p := range pts {
		fv := float64(p.Value)
		if !math.IsNaN(fv) {
			if math.IsNaN(float64(m.Min)) || fv < float64(m.Min) {
				m.Min = p.Value
			}
			if math.IsNaN(float64(m.Max)) || fv > float64(m.Max) {
				m.Max = p.Value
			}
		}
	}
	last := pts[len(pts)-1]
	m.Last, m.Step = last.Value, last.Step
}

func (f *fold) revokeKey(pl events.KeyRevokedV1) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte("key/")
	it := f.txn.NewIterator(opts)
	defer it.Close()
	want := pl.Username + "\x00" + pl.KeyID
	var del [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		_ = it.Item().Value(func(v []byte) error {
			if string(v) == want {
				del = append(del, it.Item().KeyCopy(nil))
			}
			return nil
		})
	}
	for _, k := range del {
		if err := f.txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (f *fold) deleteProject(e, p string) error {
	k := string(projectKey(e, p))
	f.projects[k] = nil
	for rk := range f.runs {
		if strings.HasPrefix(rk, string(runPrefix(e, p))) {
			delete(f.runs, rk)
		}
	}
	if err := f.txn.Delete([]byte(k)); err != nil {
		return err
	}
	if err := f.deletePrefix(runPrefix(e, p)); err != nil {
		return err
	}
	if err := f.deletePrefix(histProjectPrefix(e, p)); err != nil {
		return err
	}
	if err := f.deleteArtifacts(e, p); err != nil {
		return err
	}
	return f.deletePrefix(lineProjectPrefix(e, p))
}

// deletePrefix deletes every key under prefix, committing along the way
// when the transaction fills up (deleting twice is harmless, so a crash in
// between is repaired by re-applying the event).
func (f *fold) deletePrefix(prefix []byte) error {
	for {
		var keys [][]byte
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := f.txn.NewIterator(opts)
		for it.Rewind(); it.Valid() && len(keys) < 10000; it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		if len(keys) == 0 {
			return nil
		}
		full := len(keys) == 10000
		for _, k := range keys {
			if err := f.txn.Delete(k); err != nil {
				if !errors.Is(err, badger.ErrTxnTooBig) {
					return err
				}
				full = true
				break
			}
			f.size += len(k) + 32
		}
		if !full {
			return nil
		}
		// Commit what is deleted so far without moving the checkpoint: the
		// transaction holds nothing but deletions (applyAt flushed before
		// the deleting event), and deleting again is harmless.
		if err := f.txn.Commit(); err != nil {
			return err
		}
		f.txn = f.db.NewTransaction(true)
		f.size = 0
	}
}
