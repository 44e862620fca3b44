package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
)

// batch is a metrics proposal of rows rows of 40 metrics from step from.
func batchOf(run string, from int64, rows int) events.Event {
	rs := make([]events.Row, rows)
	for i := range rs {
		v := make(map[string]events.Value, 40)
		for m := 0; m < 40; m++ {
			v[fmt.Sprintf("metric_%02d", m)] = events.Value(float64(from) + float64(i) + float64(m)/100)
		}
		rs[i] = events.Row{Step: from + int64(i), Time: float64(from + int64(i)), Values: v}
	}
	// As the edge builds it (ingest.Service.LogRows): no type or version.
	return events.Event{Actor: "alice",
		Entity: "alice", Project: "p", Run: run, Payload: events.MustRows(rs)}
}

// TestBulkLaneBoundedAndOrdered: with the decider down, metric batches
// fill the bulk lane to its bound; the next is refused with rate_limited
// and a Retry-After, a held one waits; control proposals still go in. Once
// a decider runs, the held batch goes in, and the run's finish (proposed
// after the batches, in the control lane the decider prefers) is decided
// after every batch of the run: no row is lost or refused.
func TestBulkLaneBoundedAndOrdered(t *testing.T) {
	e := mustEnv(t, bus.DefaultConfig())
	_, stop := e.decider(true)
	e.setup()
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: "r"}})
	e.drained()
	_, evs := e.log()
	run := evs[len(evs)-1].Run
	stop()

	pr := NewProposer(e.nc, e.js, e.cfg.Subjects)
	ctx := context.Background()
	step, queued := int64(0), 0
	var refused error
	for refused == nil {
		_, refused = pr.Propose(ctx, batchOf(run, step, 500), false)
		if refused == nil {
			step += 500
			queued++
		}
		if queued > 200 {
			t.Fatal("the bulk lane took 200 batches: it is not bounded")
		}
	}
	var ee *errs.Error
	if !errors.As(refused, &ee) || ee.Kind != errs.RateLimited || ee.RetryAfter <= 0 {
		t.Fatalf("a batch past the bound: %v, want rate_limited with a Retry-After", refused)
	}
	held := make(chan error, 1)
	go func() {
		_, err := pr.Propose(HoldWhenFull(ctx), batchOf(run, step, 500), false)
		held <- err
	}()
	select {
	case err := <-held:
		t.Fatalf("the held batch returned (%v) while the lane was full", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Control proposals are not behind the batches: a run start goes into
	// the control lane at once while the bulk lane is full.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := pr.Propose(pctx, withType(events.Event{Actor: "alice", Entity: "alice", Project: "p",
		Payload: events.RunStartedV1{Name: "other"}}), false); err != nil {
		t.Fatalf("a run start while the bulk lane is full: %v", err)
	}

	// The decider prefers the control lane; the finish, sent (as clients
	// do) once every batch of the run was accepted, is decided after them.
	e.decider(false)
	if err := <-held; err != nil {
		t.Fatalf("held batch: %v", err)
	}
	if _, err := pr.Propose(ctx, withType(events.Event{Actor: "alice", Entity: "alice", Project: "p", Run: run,
		Payload: events.RunFinishedV1{State: events.StateFinished}}), true); err != nil {
		t.Fatalf("finish: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _ := e.js.Stream(ctx, bus.BulkStream)
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bulk lane not drained within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.drained()
	st, evs := e.log()
	var metrics, after int
	isFinished := false
	for _, ev := range evs {
		switch ev.Type {
		case events.MetricsLogged:
			metrics++
			if isFinished {
				after++
			}
		case events.RunFinished:
			isFinished = true
		}
	}
	if metrics != queued+1 || after != 0 || !isFinished {
		t.Fatalf("%d metric events (%d after the finish; finished %v), want %d, all before the finish", metrics, after, isFinished, queued+1)
	}
	p, _ := st.Project("alice", "p")
	if r := p.Runs[run]; r == nil || r.LastStep != step+499 {
		t.Fatalf("run %+v, want last step %d", r, step+499)
	}
}

func withType(p events.Event) events.Event {
	p.Type = p.Payload.EventType()
	p.Version = events.CurrentVersion(p.Type)
	return p
}

// TestBatchDeliveredOutOfOrder: a run's first batch is delivered to the
// decider's pull but never reaches it (as when a fetch expires while the
// batch is on its way: JetStream then redelivers it only after the 30 s ack
// wait), and the run's second batch reaches the decider first. The decider
// decides the first batch from the stream before the second, so no row is
// dropped as already logged (before this, the first batch's 500 rows were
// lost when it came back).
func TestBatchDeliveredOutOfOrder(t *testing.T) {
	e := mustEnv(t, bus.DefaultConfig())
	var dropped atomic.Int32
	e.decider(true, func(d *Decider) {
		d.lostOnTheWay = func(m jetstream.Msg) bool {
			md, err := m.Metadata()
			return err == nil && md.Stream == bus.BulkStream && md.NumDelivered == 1 && dropped.CompareAndSwap(0, 1)
		}
	})
	e.setup()
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: "r"}})
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: "s"}})
	e.drained()
	_, evs := e.log()
	run, other := evs[len(evs)-2].Run, evs[len(evs)-1].Run

	// The lane stores r's first batch (lost on its way), a batch of another
	// run, then r's second batch: the gap is seen first by the other run's
	// batch, and must still be filled before r's second.
	ctx := context.Background()
	pr := NewProposer(e.nc, e.js, e.cfg.Subjects)
	for _, b := range []events.Event{batchOf(run, 0, 500), batchOf(other, 0, 500), batchOf(run, 500, 500)} {
		if _, err := pr.Propose(ctx, b, false); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second) // less than the ack wait
	for {
		st, _ := e.js.Stream(ctx, bus.BulkStream)
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bulk lane not drained within 20s (%d dropped on the way): the dropped batch waits for its redelivery", dropped.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dropped.Load() != 1 {
		t.Fatal("no batch was dropped on its way: the test tested nothing")
	}
	st, evs := e.log()
	logged := 0
	for _, ev := range evs {
		logged += points(ev)
	}
	p, _ := st.Project("alice", "p")
	if r, o := p.Runs[run], p.Runs[other]; logged != 1500*40 || r == nil || r.LastStep != 999 || o == nil || o.LastStep != 499 {
		t.Fatalf("%d points logged (want %d), runs %+v and %+v (want last steps 999 and 499)", logged, 1500*40, p.Runs[run], p.Runs[other])
	}
}

// TestTakenOverFinishAfterBatches: ingest dies holding a run's finish (the
// finish was delivered, never acknowledged) while the run's last batches
// wait, undelivered, in the bulk lane. The next decider takes the finish
// over before its lanes start; it still decides the run's batches first, so
// none is refused as logged after the finish.
func TestTakenOverFinishAfterBatches(t *testing.T) {
	e := mustEnv(t, bus.DefaultConfig())
	_, stop := e.decider(true)
	e.setup()
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: "r"}})
	e.drained()
	_, evs := e.log()
	run := evs[len(evs)-1].Run
	stop()

	ctx := context.Background()
	pr := NewProposer(e.nc, e.js, e.cfg.Subjects)
	for _, from := range []int64{0, 500} {
		if _, err := pr.Propose(ctx, batchOf(run, from, 500), false); err != nil {
			t.Fatal(err)
		}
	}
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Run: run, Payload: events.RunFinishedV1{State: events.StateFinished}})
	// The dead decider's delivery: fetched, never acknowledged.
	cons, err := e.js.Consumer(ctx, bus.InboxStream, bus.DeciderConsumer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range got.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("took %d proposals, want the finish", n)
	}

	e.decider(false)
	e.drained()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _ := e.js.Stream(ctx, bus.BulkStream)
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bulk lane not drained within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, evs := e.log()
	logged, finished, after := 0, false, 0
	for _, ev := range evs {
		logged += points(ev)
		if finished && ev.Type == events.MetricsLogged {
			after++
		}
		finished = finished || ev.Type == events.RunFinished
	}
	p, _ := st.Project("alice", "p")
	if logged != 1000*40 || after != 0 || !finished || p.Runs[run].State != events.StateFinished {
		t.Fatalf("%d points logged (want %d), %d batches after the finish, finished %v, run %+v", logged, 1000*40, after, finished, p.Runs[run])
	}
}
