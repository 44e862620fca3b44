package ingest

import (
	"testing"
	"time"
)

// freshnessAt is a Freshness whose clock the test moves.
func freshnessAt(now *time.Time) *Freshness {
	f := NewFreshness()
	f.now = func() time.Time { return *now }
	return f
}

// TestFreshnessCountsTheSlowestServingProjector: the lag is the age of the
// oldest event appended here that the slowest counted projector has not
// folded; projectors catching up, silent, or stuck behind are not counted,
// so they cannot hold writers for good.
func TestFreshnessCountsTheSlowestServingProjector(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	f := freshnessAt(&now)
	f.MaxLag = 500 * time.Millisecond
	for i := uint64(1); i <= 10; i++ {
		f.Appended(i, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	now = t0.Add(2 * time.Second)
	if st := f.Status(); st.Behind != 0 || st.Projectors != 0 || f.Holding() {
		t.Fatalf("no projector heard of: %+v, holding %v; want nothing held", st, f.Holding())
	}
	for i := uint64(11); i <= 20; i++ { // forgotten above: appended again
		f.Appended(i, now.Add(-time.Second+time.Duration(i-11)*100*time.Millisecond))
	}
	f.Position("fast", 20, true)
	f.Position("slow", 12, true)
	f.Position("new", 0, false) // catching up at start
	st := f.Status()
	if want := 800 * time.Millisecond; st.Behind != want || st.Events != 8 || st.Projectors != 2 || st.Ignored != 1 {
		t.Fatalf("status %+v; want behind %v (event 13), 8 events, 2 counted, 1 ignored", st, want)
	}
	if !f.Holding() {
		t.Fatal("800 ms behind, MaxLag 500 ms: not holding")
	}
	// The slow one moves on: it is 300 ms behind.
	f.Position("slow", 18, true)
	if st := f.Status(); st.Events != 2 || f.Holding() {
		t.Fatalf("after the slow projector advanced: %+v, holding %v", st, f.Holding())
	}
	// It stops advancing but keeps announcing: counted until Silence,
	// then ignored (stuck).
	now = now.Add(5 * time.Second)
	f.Position("fast", 20, true)
	f.Position("slow", 18, true)
	if !f.Holding() {
		t.Fatal("a projector 5 s behind is not holding writers")
	}
	now = now.Add(6 * time.Second)
	f.Position("fast", 20, true)
	f.Position("slow", 18, true)
	if st := f.Status(); st.Ignored != 2 || st.Projectors != 1 || st.Events != 0 || f.Holding() {
		t.Fatalf("stuck for 11 s: %+v, holding %v; want it ignored", st, f.Holding())
	}
	// It stays ignored while it keeps announcing the same position: new
	// events do not make it count (and hold writers) again.
	f.Appended(21, now)
	now = now.Add(time.Second)
	f.Position("fast", 21, true)
	f.Position("slow", 18, true)
	if st := f.Status(); st.Projectors != 1 || st.Ignored != 2 || f.Holding() {
		t.Fatalf("a stuck projector after a new event: %+v, holding %v", st, f.Holding())
	}
	// A batch waiting in the bulk lane counts too: the decider may lag;
	// unless it appended nothing for a second (stalled: a full disk).
	f.Queued(now.Add(-600 * time.Millisecond))
	if st := f.Status(); st.Behind != 0 || f.Holding() {
		t.Fatalf("a batch 600 ms in the bulk lane of a decider quiet for 1 s: %+v, holding %v", st, f.Holding())
	}
	f.Appended(22, now)
	f.Position("fast", 22, true)
	if st := f.Status(); st.Behind != 600*time.Millisecond || !f.Holding() {
		t.Fatalf("a batch 600 ms in the bulk lane: %+v, holding %v", st, f.Holding())
	}
	f.Queued(time.Time{})
	// Silent ones are ignored too: nobody left to wait for.
	f.Appended(23, now)
	now = now.Add(11 * time.Second)
	if st := f.Status(); st.Projectors != 0 || st.Behind != 0 {
		t.Fatalf("every projector silent for 11 s: %+v; want none counted", st)
	}
}
