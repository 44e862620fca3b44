package projections

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// bigLog is a user, a project, a run and batches metric events each larger
// than Badger's transaction limit with 8 MiB memtables (1.2 MiB: 150
// metrics x 1,000 rows of random values, about 9.5 bytes a point in
// chunks, is 1.4 MB).
func bigLog(t *testing.T, batches int) []RawRecord {
	t.Helper()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var log []RawRecord
	rng := rand.New(rand.NewPCG(13, 13))
	add := func(e events.Event) {
		e.ID = events.NewID(t0)
		e.Type = e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		e.Actor = "alice"
		e.Time = t0.Add(time.Duration(len(log)) * time.Second)
		data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: data, Time: e.Time})
	}
	add(events.Event{Entity: "alice", Payload: events.UserCreatedV1{Username: "alice"}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}})
	add(events.Event{Entity: "alice", Project: "p", Run: "r", Payload: events.RunStartedV1{RunID: "r", Name: "r"}})
	for b := 0; b < batches; b++ {
		rows := make([]events.Row, 1000)
		for i := range rows {
			step := int64(b*1000 + i)
			v := make(map[string]events.Value, 150)
			for m := 0; m < 150; m++ {
				v[fmt.Sprintf("m%03d", m)] = events.Value(rng.Float64())
			}
			rows[i] = events.Row{Step: step, Time: float64(step), Values: v}
		}
		add(events.Event{Entity: "alice", Project: "p", Run: "r", Payload: events.MustRows(rows)})
	}
	return log
}

// TestEventLargerThanATransaction: an event whose history does not fit in
// one Badger transaction is folded with overflow commits, and a crash after
// an overflow commit (before the documents and the sequence are committed)
// is repaired by folding the event again: the read model then holds the
// same bytes as one that never crashed.
func TestEventLargerThanATransaction(t *testing.T) {
	ctx := context.Background()
	log := bigLog(t, 3)
	whole := mustOpen(t, Options{Dir: filepath.Join(t.TempDir(), "whole"), memTableSize: 8 << 20})
	if _, err := whole.ReplayTo(ctx, sliceSource(log, 1000), 0, nil); err != nil {
		t.Fatal(err)
	}
	r, err := whole.Run("alice", "p", "r")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Metrics["m149"].Count; got != 3000 {
		t.Fatalf("m149 has %d points, want 3000", got)
	}

	dir := filepath.Join(t.TempDir(), "crashed")
	s := mustOpen(t, Options{Dir: dir, memTableSize: 8 << 20})
	if _, err := s.ReplayTo(ctx, sliceSource(log[:4], 1000), 0, nil); err != nil {
		t.Fatal(err)
	}
	// Fold the fifth event and "crash" before its final commit.
	f := newFold(s.db)
	if err := f.applyAt(5, mustDecode(t, log[4].Data)); err != nil {
		t.Fatal(err)
	}
	if f.overflows == 0 {
		t.Fatalf("no overflow commit: the event fit in a transaction of %d bytes", f.limit)
	}
	f.txn.Discard()
	s.Close()
	s = mustOpen(t, Options{Dir: dir, memTableSize: 8 << 20})
	if s.Seq() != 4 {
		t.Fatalf("after the crash the read model is at seq %d, want 4", s.Seq())
	}
	if _, err := s.ReplayTo(ctx, sliceSource(log, 1000), 0, nil); err != nil {
		t.Fatal(err)
	}
	a, err := whole.Digest()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("digest after a crash between overflow commits %+v != without %+v", b, a)
	}
}
