package projections

import (
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/par"
)

// Folding runs in parallel. Once decoding is cheap, the fold is the
// rebuild's critical path, and most of it is metric batches: building the
// points of each metric into history chunks (encoding them is most of the
// fold's CPU). Metric batches of different runs touch different keys and
// documents, so a stretch of consecutive metrics_logged events is folded
// with one worker per run, each in log order for its run:
//
//   - the fold first commits what it holds (documents and the sequence up
//     to the event before the stretch), so every worker reads the same
//     committed state;
//   - each worker folds its run's events into its own transaction and
//     commits the history it wrote, without documents or sequence: exactly
//     the fold's overflow commit (see maxCachedDocs), which is idempotent
//     given the documents. A crash after some workers committed re-folds
//     the stretch over the documents it started from and writes the same
//     bytes;
//   - the workers' run documents then join the fold's cache and are
//     committed with the sequence as usual.
//
// The result is the same read model, byte for byte, as folding the events
// one after the other (TestParallelFoldDigest).
const (
	// minParallelEvents is the shortest stretch worth the extra commit.
	minParallelEvents = 4
	// maxParallelRuns bounds the run documents a stretch adds to the
	// fold's cache (their flush must fit in one transaction).
	maxParallelRuns = maxCachedDocs / 2
)

// foldInParallel turns the parallel fold on (benchmarks compare without).
var foldInParallel = true

// parallelStretches counts the stretches folded in parallel (for tests).
var parallelStretches atomic.Int64

// metricStretch returns the length n of the stretch that starts recs:
// consecutive sequences, metrics_logged events not skipped, of at most
// maxParallelRuns runs; and its events grouped by run, in log order, when
// it is worth folding in parallel (nil when it is too short or has one
// run: then no stretch starting inside it is worth it either).
func metricStretch(recs []Record) (n int, groups [][]Record) {
	index := map[string]int{}
	for n < len(recs) {
		r := recs[n]
		if r.Skip || r.Event.Type != events.MetricsLogged || r.Seq != recs[0].Seq+uint64(n) {
			break
		}
		k := string(runKey(r.Event.Entity, r.Event.Project, r.Event.Run))
		g, ok := index[k]
		if !ok {
			if len(groups) == maxParallelRuns {
				break
			}
			g = len(groups)
			index[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], r)
		n++
	}
	if n < minParallelEvents || len(groups) < 2 {
		return n, nil
	}
	return n, groups
}

// foldParallel folds the stretch of metric events that starts recs (see
// metricStretch) and returns how many records it folded and how many it
// looked at: when it folded none, the caller folds the records it looked
// at one by one.
func (f *fold) foldParallel(recs []Record) (folded, scanned int, err error) {
	n, groups := metricStretch(recs)
	if groups == nil || !foldInParallel {
		return 0, n, nil
	}
	if f.last > 0 {
		if err := f.flush(f.last); err != nil {
			return 0, n, err
		}
	}
	workers := make([]*fold, len(groups))
	errs := make([]error, len(groups))
	par.Do(len(groups), func(g int) {
		w := newFold(f.db)
		workers[g] = w
		errs[g] = w.foldRun(groups[g])
	})
	for _, w := range workers {
		w.txn.Discard()
	}
	if err := errors.Join(errs...); err != nil {
		return 0, n, err
	}
	for _, w := range workers {
		maps.Copy(f.runs, w.runs) // each run has one worker
		f.overflows += w.overflows
	}
	// The fold's transaction (empty: flushed above, or nothing folded yet)
	// reads a snapshot from before the workers' commits: start a new one.
	f.txn.Discard()
	f.txn = f.db.NewTransaction(true)
	f.last = recs[n-1].Seq
	parallelStretches.Add(1)
	return n, n, nil
}

// foldRun folds one run's events of a stretch and commits the history it
// wrote (the documents stay in w.runs).
func (w *fold) foldRun(recs []Record) error {
	for _, r := range recs {
		if err := w.apply(r.Event); err != nil {
			return fmt.Errorf("fold event %s (seq %d): %w", r.Event.ID, r.Seq, err)
		}
	}
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("commit read model (parallel fold): %w", err)
	}
	return nil
}
