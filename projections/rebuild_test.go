package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// testLog builds a log: a user, a project, runs with metric batches, a
// summary, a rename, an invite and a deleted run.
func testLog(t *testing.T, runs, batches int) []RawRecord {
	t.Helper()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var log []RawRecord
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
	add(events.Event{Entity: "alice", Payload: events.UserCreatedV1{Username: "alice", Email: "alice@example.com"}})
	add(events.Event{Entity: "bob", Actor: "bob", Payload: events.UserCreatedV1{Username: "bob", Email: "bob@example.com"}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.MemberInvitedV1{Username: "bob", Role: events.RoleMember}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.MemberJoinedV1{Username: "bob", Role: events.RoleMember}})
	for r := 0; r < runs; r++ {
		id := fmt.Sprintf("run%03d", r)
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: "r-" + id,
			Tags: []string{"a"}, Config: json.RawMessage(`{"lr":0.1}`)}})
		for b := 0; b < batches; b++ {
			rows := make([]events.Row, 10)
			for i := range rows {
				step := int64(b*10 + i)
				rows[i] = events.Row{Step: step, Time: float64(step), Values: map[string]events.Value{"loss": events.Value(1 / float64(step+1)), "acc": events.Value(step)}}
			}
			add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.MustRows(rows)})
		}
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.SummaryUpdatedV1{Values: map[string]events.Value{"best": 1}}})
	}
	name := "renamed"
	add(events.Event{Entity: "alice", Project: "p", Run: "run000", Payload: events.RunUpdatedV1{Name: &name}})
	add(events.Event{Entity: "alice", Project: "p", Run: "run001", Payload: events.RunDeletedV1{}})
	add(events.Event{Entity: "alice", Project: "p", Run: "run002", Payload: events.RunFinishedV1{State: events.StateFinished}})
	return log
}

// sliceSource delivers log in batches of size n.
func sliceSource(log []RawRecord, n int) Source {
	return func(ctx context.Context, from uint64, fn func([]RawRecord) error) error {
		for i := int(from) - 1; i < len(log); i += n {
			if i < 0 {
				i = 0
			}
			if err := fn(log[i:min(i+n, len(log))]); err != nil {
				return err
			}
		}
		return nil
	}
}

func mustOpen(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDigestLiveEqualsReplay: a read model fed in small batches, with
// restarts in between, and one replayed in one go have the same digest; a
// read model one event short has another.
func TestDigestLiveEqualsReplay(t *testing.T) {
	ctx := context.Background()
	log := testLog(t, 4, 30)
	dir := t.TempDir()
	live := mustOpen(t, Options{Dir: dir})
	// Live: odd batch sizes, reopened twice (a restart resumes after the
	// checkpoint; re-delivered events are skipped).
	for i, cut := range []int{37, 90, len(log)} {
		if _, err := live.ReplayTo(ctx, sliceSource(log[:cut], 7+i), 0, nil); err != nil {
			t.Fatal(err)
		}
		if cut < len(log) {
			live.Close()
			live = mustOpen(t, Options{Dir: dir})
			// A batch overlapping what is applied changes nothing.
			if err := live.Apply([]Record{{Seq: 1, Event: mustDecode(t, log[0].Data)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rebuilt := mustOpen(t, Options{Dir: filepath.Join(t.TempDir(), "rebuilt")})
	var calls int
	if _, err := rebuilt.ReplayTo(ctx, sliceSource(log, 1000), 0, func(uint64, int64) { calls++ }); err != nil {
		t.Fatal(err)
	}
	a, err := live.Digest()
	if err != nil {
		t.Fatal(err)
	}
	b, err := rebuilt.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("live digest %+v != rebuilt digest %+v", a, b)
	}
	if a.Seq != uint64(len(log)) || a.Keys == 0 || calls == 0 {
		t.Fatalf("digest %+v after %d events, %d progress calls", a, len(log), calls)
	}
	short := mustOpen(t, Options{InMemory: true})
	if _, err := short.ReplayTo(ctx, sliceSource(log, 1000), uint64(len(log)-1), nil); err != nil {
		t.Fatal(err)
	}
	c, _ := short.Digest()
	if c.Digest == a.Digest || c.Seq != uint64(len(log)-1) {
		t.Fatalf("a read model one event short has digest %+v, the full one %+v", c, a)
	}
}

func mustDecode(t *testing.T, b []byte) events.Event {
	t.Helper()
	e, err := events.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGapStops: an event after a missing sequence stops the projector with
// ErrGap and applies nothing of the batch.
func TestGapStops(t *testing.T) {
	log := testLog(t, 1, 2)
	s := mustOpen(t, Options{InMemory: true})
	if err := s.Apply([]Record{{Seq: 1, Event: mustDecode(t, log[0].Data)}}); err != nil {
		t.Fatal(err)
	}
	err := s.Apply([]Record{{Seq: 3, Event: mustDecode(t, log[2].Data)}})
	if !errors.Is(err, ErrGap) {
		t.Fatalf("apply after a gap: %v, want ErrGap", err)
	}
	if s.Seq() != 1 {
		t.Fatalf("seq %d after a refused batch, want 1", s.Seq())
	}
}

// TestVersionChangeRebuilds: a read model written by another projection
// version is dropped at open, so the projector replays the log into it.
func TestVersionChangeRebuilds(t *testing.T) {
	ctx := context.Background()
	log := testLog(t, 2, 3)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplayTo(ctx, sliceSource(log, 100), 0, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := s.Digest()
	// Pretend an older fold wrote it.
	err = s.DB().Update(func(txn *badger.Txn) error { return txn.Set(keyVersion, putUint(Version+7)) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, Options{Dir: dir})
	if s.Seq() != 0 {
		t.Fatalf("read model of another version kept: seq %d", s.Seq())
	}
	if d, _ := s.Digest(); d.Keys != 0 {
		t.Fatalf("read model of another version kept %d keys", d.Keys)
	}
	if _, err := s.ReplayTo(ctx, sliceSource(log, 100), 0, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Digest(); got != want {
		t.Fatalf("rebuilt digest %+v, want %+v", got, want)
	}
}

// TestPrepareDir: whatever a crash leaves of a rebuild, one complete read
// model ends up in the base directory.
func TestPrepareDir(t *testing.T) {
	mk := func(t *testing.T, paths ...string) string {
		base := filepath.Join(t.TempDir(), "readmodel")
		for _, p := range paths {
			p = base + p
			if filepath.Ext(p) == ".rebuilding" {
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "from"), []byte(p), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return base
	}
	for name, c := range map[string]struct {
		have []string
		from string // which directory's content ends up in base ("" none)
	}{
		"fresh":                     {nil, ""},
		"live only":                 {[]string{""}, ""},
		"rebuild unfinished":        {[]string{"", ".new", ".new.rebuilding"}, ""},
		"switched, old not moved":   {[]string{"", ".new"}, ""},
		"switched, old removed":     {[]string{".new"}, ".new"},
		"old half removed":          {[]string{".old", ".new"}, ".new"},
		"second rebuild unfinished": {[]string{"", ".rebuilding", ".new"}, ".new"},
	} {
		t.Run(name, func(t *testing.T) {
			base := mk(t, c.have...)
			if err := PrepareDir(base); err != nil {
				t.Fatal(err)
			}
			for _, gone := range []string{".new", ".old", ".rebuilding", ".new.rebuilding"} {
				if _, err := os.Stat(base + gone); err == nil {
					t.Errorf("%s left behind", base+gone)
				}
			}
			got, err := os.ReadFile(filepath.Join(base, "from"))
			if c.have == nil {
				return
			}
			if err != nil {
				t.Fatalf("no read model in %s: %v", base, err)
			}
			if string(got) != base+c.from {
				t.Errorf("read model from %s, want from %s", got, base+c.from)
			}
		})
	}
}

// TestAsOf: replaying one project up to a sequence or a time gives the
// project as it was then.
func TestAsOf(t *testing.T) {
	ctx := context.Background()
	log := testLog(t, 3, 2)
	read := func(ctx context.Context, filters []string, fn func([]RawRecord) error) error {
		return sliceSource(log, 5)(ctx, 1, fn)
	}
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	// Before bob joined (seq 5): alice alone.
	st, err := AsOf(ctx, read, subj, "alice", "p", 4, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := st.Project("alice", "p")
	st.Close()
	if err != nil || len(p.Members) != 1 {
		t.Fatalf("as of seq 4: %+v %v, want alice alone", p, err)
	}
	// By time: the first run started, with 2 batches, nothing else.
	at := log[5+2].Time // run000 started at index 5, its 2 batches after
	st, err = AsOf(ctx, read, subj, "alice", "p", 0, at)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs("alice", "p", RunFilter{})
	if err != nil || len(runs) != 1 || runs[0].Rows != 20 || len(runs[0].Explicit) != 0 {
		t.Fatalf("as of %s: runs %+v %v, want run000 with 20 rows and no summary", at, runs, err)
	}
}
