package projections

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// TestQuarantineSkipsIdentically: an unreadable event stops Follow,
// ReplayTo and AsOf with an error naming its sequence and the quarantine
// command; once quarantined, every one of them skips exactly it, and a
// live follow (fed in small batches) and a replay have the same digest.
func TestQuarantineSkipsIdentically(t *testing.T) {
	ctx := context.Background()
	log := testLog(t, 3, 4)
	bad := uint64(8) // a metric batch of run000
	log[bad-1].Data = []byte(`{"id":"x","type":"from_the_future","v":1,"entity":"alice","project":"p","payload":{}}`)
	log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: []byte("\x00junk")})
	junk := uint64(len(log))
	set := map[uint64]bool{}
	q := func(context.Context) (map[uint64]bool, error) { return set, nil }
	reader := func(ctx context.Context, filters []string, fn func([]RawRecord) error) error { return fn(log) }

	for _, want := range []uint64{bad, junk} {
		st := mustOpen(t, Options{InMemory: true, Quarantined: q})
		err := st.Follow(ctx, sliceSource(log, 3))
		u, ok := events.Unreadable(err)
		if !ok || u.Seq != want || !strings.Contains(err.Error(), events.QuarantineCommand(want)) {
			t.Fatalf("follow: %v, want unreadable seq %d naming the command", err, want)
		}
		_, err = mustOpen(t, Options{InMemory: true, Quarantined: q}).ReplayTo(ctx, sliceSource(log, 100), 0, nil)
		if u, ok := events.Unreadable(err); !ok || u.Seq != want {
			t.Fatalf("replay: %v, want unreadable seq %d", err, want)
		}
		if want == bad {
			if _, err := AsOf(ctx, reader, events.Subjects{Prefix: "lb"}, "alice", "p", 0, time.Time{}); err == nil {
				t.Fatal("time travel over an unreadable event succeeded")
			}
		}
		set[want] = true // what Quarantined reads once the decision is in the log
	}
	live := mustOpen(t, Options{InMemory: true, Quarantined: q})
	if err := live.Follow(ctx, sliceSource(log, 3)); err != nil {
		t.Fatal(err)
	}
	replay := mustOpen(t, Options{InMemory: true, Quarantined: q})
	if _, err := replay.ReplayTo(ctx, sliceSource(log, 1000), 0, nil); err != nil {
		t.Fatal(err)
	}
	a, _ := live.Digest()
	b, _ := replay.Digest()
	if a != b || a.Seq != junk {
		t.Fatalf("live %+v, replay %+v (want equal, at seq %d)", a, b, junk)
	}
	// The rest of run000 is intact: only the quarantined batch is missing.
	runs, err := live.Runs("alice", "p", RunFilter{})
	if err != nil || len(runs) != 2 { // run001 is deleted
		t.Fatalf("runs: %d, %v", len(runs), err)
	}
}
