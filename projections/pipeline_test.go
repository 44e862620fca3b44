package projections

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// richLog is a log with everything a fold does: users, projects, members,
// artifacts and their deletion (artifactLog), then runs with metric
// batches (NaN and ±Inf among the values, metrics that come and go),
// summaries, lines, renames, a finished, a deleted and a resumed run, and
// a deleted project.
func richLog(t *testing.T) []RawRecord {
	t.Helper()
	log := artifactLog(t)
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	add := func(e events.Event) {
		e.ID = events.NewID(t0)
		e.Type = e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		if e.Actor == "" {
			e.Actor = "alice"
		}
		e.Time = t0.Add(time.Duration(len(log)) * time.Second)
		data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: data, Time: e.Time})
	}
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, -0.5, 1e300}
	const runs = 12
	for r := range runs {
		id := fmt.Sprintf("r%02d", r)
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: id, Tags: []string{"t"}}})
	}
	step := make([]int64, runs)
	for b := range 300 {
		r := (b * 7) % runs // runs interleaved, unevenly
		id := fmt.Sprintf("r%02d", r)
		rows := make([]events.Row, 1+(b*13)%150) // batches of 1-150 rows: chunks fill across batches
		for i := range rows {
			v := map[string]events.Value{"loss": events.Value(odd[(b+i)%len(odd)]), "acc": events.Value(float64(i) / 7)}
			if b%5 == 0 {
				v[fmt.Sprintf("sparse/%d", b%3)] = events.Value(b)
			}
			rows[i] = events.Row{Step: step[r], Time: float64(step[r]), Values: v}
			step[r]++
		}
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.MustRows(rows)})
		switch b % 40 {
		case 3:
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.SummaryUpdatedV1{Values: map[string]events.Value{"best": events.Value(b)}}})
		case 11:
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunLinesWrittenV1{File: "output.log", Offset: int64(b), Lines: []string{"a", "b"}}})
		case 17:
			name := fmt.Sprintf("renamed-%d", b)
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunUpdatedV1{Name: &name, AddTags: []string{"x"}}})
		case 23:
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunFinishedV1{State: events.StateFinished}})
		case 29:
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunResumedV1{}})
		}
	}
	// Stretches of metric batches of two runs, each followed by a summary
	// and a lone batch of one of them.
	metrics := func(r int, n int) {
		rows := make([]events.Row, n)
		for i := range rows {
			rows[i] = events.Row{Step: step[r], Time: float64(step[r]), Values: map[string]events.Value{"loss": events.Value(i), "acc": events.Value(-i)}}
			step[r]++
		}
		add(events.Event{Entity: "alice", Project: "p", Run: fmt.Sprintf("r%02d", r), Payload: events.MustRows(rows)})
	}
	for k := range 3 {
		for i := range 6 {
			metrics(4+i%2, 37+k)
		}
		add(events.Event{Entity: "alice", Project: "p", Run: "r04", Payload: events.SummaryUpdatedV1{Values: map[string]events.Value{"k": events.Value(k)}}})
		metrics(4, 11)
		metrics(5, 3)
		add(events.Event{Entity: "alice", Project: "p", Run: "r05", Payload: events.SummaryUpdatedV1{Values: map[string]events.Value{"k": events.Value(k)}}})
	}
	add(events.Event{Entity: "alice", Project: "p", Run: "r03", Payload: events.RunDeletedV1{}})
	add(events.Event{Entity: "bob", Project: "q", Actor: "bob", Payload: events.ProjectDeletedV1{}})
	return log
}

// sequentialFold is the fold without the read-ahead pipeline (Follow as
// it was): each batch is decoded, folded and committed before the next is
// read.
func sequentialFold(t *testing.T, log []RawRecord, fetch int) DigestInfo {
	t.Helper()
	s := mustOpen(t, Options{Dir: filepath.Join(t.TempDir(), "sequential")})
	if err := sequentialFollow(s, sliceSource(log, fetch)); err != nil {
		t.Fatal(err)
	}
	return digest(t, s)
}

func digest(t *testing.T, s *Store) DigestInfo {
	t.Helper()
	d, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestReadAheadDigestEqualsSequential: a replay and a follow through the
// read-ahead pipeline give the same read model, byte for byte, as the
// sequential fold, whatever the fetch sizes.
func TestReadAheadDigestEqualsSequential(t *testing.T) {
	log := richLog(t)
	want := sequentialFold(t, log, 1)
	if want.Seq != uint64(len(log)) || want.Keys < 50 {
		t.Fatalf("sequential fold: %+v for %d events", want, len(log))
	}
	if other := sequentialFold(t, log, 1000); other != want {
		t.Fatalf("sequential folds in batches of 1 and 1000 differ: %+v, %+v", want, other)
	}
	for _, fetch := range []int{1, 7, 64, 1000} {
		replayed := mustOpen(t, Options{Dir: filepath.Join(t.TempDir(), "replay")})
		if _, err := replayed.ReplayTo(t.Context(), sliceSource(log, fetch), 0, nil); err != nil {
			t.Fatal(err)
		}
		if got := digest(t, replayed); got != want {
			t.Errorf("replay in fetches of %d: %+v, sequential fold %+v", fetch, got, want)
		}
		followed := mustOpen(t, Options{InMemory: true})
		if err := followed.Follow(t.Context(), sliceSource(log, fetch)); err != nil {
			t.Fatal(err)
		}
		if got := digest(t, followed); got != want {
			t.Errorf("follow in fetches of %d: %+v, sequential fold %+v", fetch, got, want)
		}
	}
}

// TestReplayInterruptedResumes: a replay stopped at any point (its context
// cancelled while batches are read and decoded ahead, or its source
// failing), the store closed and reopened, resumes from the stored
// sequence and ends with the digest of an uninterrupted replay.
func TestReplayInterruptedResumes(t *testing.T) {
	log := richLog(t)
	want := sequentialFold(t, log, 1000)
	errSource := errors.New("source failed")
	for _, stopAt := range []int{1, 5, 23, 60} { // progress calls before the stop
		for _, how := range []string{"cancel", "source error"} {
			t.Run(fmt.Sprintf("%s after %d batches", how, stopAt), func(t *testing.T) {
				dir := t.TempDir()
				s := mustOpen(t, Options{Dir: dir})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				src := sliceSource(log, 5)
				calls := 0
				if how == "source error" {
					src = func(ctx context.Context, from uint64, fn func([]RawRecord) error) error {
						return sliceSource(log, 5)(ctx, from, func(b []RawRecord) error {
							if b[0].Seq > uint64(stopAt*5) {
								return errSource
							}
							return fn(b)
						})
					}
				}
				seq, err := s.ReplayTo(ctx, src, 0, func(uint64, int64) {
					if calls++; calls == stopAt && how == "cancel" {
						cancel()
					}
				})
				wantErr := map[string]error{"cancel": context.Canceled, "source error": errSource}[how]
				if !errors.Is(err, wantErr) {
					t.Fatalf("interrupted replay: %v, want %v", err, wantErr)
				}
				if seq == 0 || seq >= uint64(len(log)) || seq != s.Seq() {
					t.Fatalf("interrupted replay stopped at %d (store at %d) of %d", seq, s.Seq(), len(log))
				}
				s.Close()
				s = mustOpen(t, Options{Dir: dir})
				if s.Seq() != seq {
					t.Fatalf("reopened at %d, the replay stopped at %d", s.Seq(), seq)
				}
				if _, err := s.ReplayTo(t.Context(), sliceSource(log, 64), 0, nil); err != nil {
					t.Fatal(err)
				}
				if got := digest(t, s); got != want {
					t.Fatalf("resumed replay: %+v, uninterrupted %+v", got, want)
				}
			})
		}
	}
}

// TestReplayToStopsAtUpTo: a replay up to a sequence in the middle of a
// fetch applies exactly that far and reads no further than that fetch.
func TestReplayToStopsAtUpTo(t *testing.T) {
	log := richLog(t)
	upTo := uint64(len(log) / 2)
	want := sequentialFold(t, log[:upTo], 1000)
	s := mustOpen(t, Options{InMemory: true})
	fetches := 0
	src := func(ctx context.Context, from uint64, fn func([]RawRecord) error) error {
		return sliceSource(log, 10)(ctx, from, func(b []RawRecord) error {
			fetches++
			return fn(b)
		})
	}
	seq, err := s.ReplayTo(t.Context(), src, upTo+3, nil) // not a fetch boundary
	if err != nil || seq != upTo+3 {
		t.Fatalf("replay to %d: at %d, %v", upTo+3, seq, err)
	}
	if want := int(upTo+3+9) / 10; fetches != want {
		t.Errorf("%d fetches to reach sequence %d in fetches of 10, want %d", fetches, upTo+3, want)
	}
	s2 := mustOpen(t, Options{InMemory: true})
	if _, err := s2.ReplayTo(t.Context(), sliceSource(log, 10), upTo, nil); err != nil {
		t.Fatal(err)
	}
	if got := digest(t, s2); got != want {
		t.Fatalf("replay to %d: %+v, sequential fold of the same events %+v", upTo, got, want)
	}
}
