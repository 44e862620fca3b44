package bus_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// TestReadRacingShutdownIsUnavailable: reads racing a projector's shutdown
// are served or answered unavailable (503, retryable), never with an
// internal error from a closed database.
func TestReadRacingShutdownIsUnavailable(t *testing.T) {
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := bus.Dial(ctx, bus.ClientURL(ns), "shutdown-test", bus.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, e := range []events.Event{
		{Type: events.UserCreated, Entity: "alice", Payload: events.UserCreatedV1{Username: "alice"}},
		{Type: events.KeyCreated, Entity: "alice", Payload: events.KeyCreatedV1{Username: "alice", KeyID: "k1", Hash: policy.HashKey(aliceKey)}},
		{Type: events.ProjectCreated, Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}},
	} {
		e.ID, e.Actor, e.Time = events.NewID(at), "alice", at.Add(time.Duration(i)*time.Second)
		data, _ := events.Encode(e)
		if _, err := bus.Append(ctx, c.JS, bus.Msg{Subject: c.Subject.Event(e), ID: e.ID, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	rm, err := query.OpenReadModel(c.EventLog(), c.Subject, projections.Options{Dir: t.TempDir() + "/rm"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rm.Run(runCtx) }()
	req := query.Request{KeyHash: policy.HashKey(aliceKey), Op: query.OpProject, Entity: "alice", Project: "p", MinSeq: 3}
	if _, err := rm.Reader.Read(ctx, req); err != nil {
		t.Fatal(err)
	}

	var served, unavailable atomic.Int64
	var wrong atomic.Value
	var wg sync.WaitGroup
	quit := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				_, err := rm.Reader.Read(ctx, req)
				switch {
				case err == nil:
					served.Add(1)
				case errs.KindOf(err) == errs.Unavailable:
					unavailable.Add(1)
				default:
					wrong.Store(err)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("projector: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // reads go on after the shutdown
	close(quit)
	wg.Wait()
	if err := wrong.Load(); err != nil {
		t.Fatalf("a read racing the shutdown failed with %v (kind %s), want unavailable", err, errs.KindOf(err.(error)))
	}
	if served.Load() == 0 || unavailable.Load() == 0 {
		t.Fatalf("%d reads served, %d unavailable: want both", served.Load(), unavailable.Load())
	}
	t.Logf("%d reads served, %d answered unavailable", served.Load(), unavailable.Load())
}
