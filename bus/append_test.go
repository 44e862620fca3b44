package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/events"
)

// mustBus starts an embedded nats-server with JetStream in a temp dir and
// ensures the topology with cfg.
func mustBus(t *testing.T, cfg Config) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, js, err := Connect(ClientURL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopology(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func lastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestAppendBatchAllOrNothing: a batch whose second aggregate's expectation
// fails stores nothing; the same batch with the right expectations stores
// every message at consecutive sequences; re-sending it is refused as
// already appended.
func TestAppendBatchAllOrNothing(t *testing.T) {
	nc, js := mustBus(t, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	// One event on project b/q, so that expecting 0 there conflicts.
	seq, err := Append(ctx, js, Msg{Subject: "lb.ev.b.q.project_created", ID: "x0", Data: []byte("{}")})
	if err != nil || seq != 1 {
		t.Fatalf("append: %d %v", seq, err)
	}
	batch := []Msg{
		{Subject: "lb.ev.a.p.member_invited", ID: "b1", Data: []byte("1"), ExpectSubject: subj.Aggregate("a", "p"), ExpectSeq: 0},
		{Subject: "lb.ev.a.p.member_joined", ID: "b2", Data: []byte("2")},
		{Subject: "lb.ev.b.q.member_joined", ID: "b3", Data: []byte("3"), ExpectSubject: subj.Aggregate("b", "q"), ExpectSeq: 0},
	}
	if _, err := AppendBatch(ctx, nc, batch); !errors.Is(err, ErrConflict) {
		t.Fatalf("batch with a stale expectation: err = %v, want ErrConflict", err)
	}
	if got := lastSeq(t, js); got != 1 {
		t.Fatalf("a refused batch stored messages: last seq %d, want 1", got)
	}
	batch[2].ExpectSeq = 1
	seqs, err := AppendBatch(ctx, nc, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 3 || seqs[0] != 2 || seqs[1] != 3 || seqs[2] != 4 {
		t.Fatalf("seqs = %v, want [2 3 4]", seqs)
	}
	if _, err := AppendBatch(ctx, nc, batch); !errors.Is(err, ErrAlreadyAppended) && !errors.Is(err, ErrConflict) {
		t.Fatalf("re-sent batch: err = %v, want ErrAlreadyAppended", err)
	}
	// Without expectations the duplicate ids are what refuses it.
	for i := range batch {
		batch[i].ExpectSubject = ""
	}
	if _, err := AppendBatch(ctx, nc, batch); !errors.Is(err, ErrAlreadyAppended) {
		t.Fatalf("re-sent batch: err = %v, want ErrAlreadyAppended", err)
	}
	if got := lastSeq(t, js); got != 4 {
		t.Fatalf("last seq %d, want 4", got)
	}
}
