package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// valve pauses a projector between two batches of the log it folds.
type valve struct {
	mu     sync.Mutex
	closed bool
	open   chan struct{}
}

func (v *valve) close() { v.mu.Lock(); v.closed, v.open = true, make(chan struct{}); v.mu.Unlock() }
func (v *valve) release() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		v.closed = false
		close(v.open)
	}
}

// wait returns once the valve is open, or ctx's error.
func (v *valve) wait(ctx context.Context) error {
	v.mu.Lock()
	closed, open := v.closed, v.open
	v.mu.Unlock()
	if closed {
		select {
		case <-open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// freshnessWorld is an ingest and a projector in this process on a real
// nats-server and a real Badger, with a valve in the projector's feed.
type freshnessWorld struct {
	t         *testing.T
	in        *Ingest
	proj      *Projector
	valve     *valve
	stopProj  func()
	run       string
	step      int64
	freshness *ingest.Freshness
}

func mustFreshnessWorld(t *testing.T, silence time.Duration) *freshnessWorld {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after cancel
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b, err := bus.Dial(ctx, bus.ClientURL(ns), "test", bus.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	w := &freshnessWorld{t: t, valve: &valve{}}
	el := b.EventLog()
	source := el.Source
	el.Source = func(follow bool) projections.Source {
		src := source(follow)
		return func(ctx context.Context, from uint64, fn func([]projections.RawRecord) error) error {
			return src(ctx, from, func(batch []projections.RawRecord) error {
				if err := w.valve.wait(ctx); err != nil {
					return err // stopped while paused: the batch is not folded
				}
				return fn(batch)
			})
		}
	}
	rm, err := query.OpenReadModel(el, b.Subject, projections.Options{Dir: filepath.Join(t.TempDir(), "readmodel")}, b.Log)
	if err != nil {
		t.Fatal(err)
	}
	w.proj = &Projector{ReadModel: rm, Bus: b}
	w.in, err = NewIngest(b, IngestConfig{AdminKey: ingest.NewAPIKey()}, rm.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w.freshness = w.in.Service.Decider.Freshness
	w.freshness.Silence = silence
	wg.Add(2)
	go func() { defer wg.Done(); _ = w.in.Run(ctx) }()
	pctx, stopProj := context.WithCancel(ctx)
	go func() { defer wg.Done(); _ = w.proj.Run(pctx, false) }()
	w.stopProj = stopProj
	<-w.in.Service.Ready()
	w.submit(events.ProjectCreatedV1{Name: "p"})
	w.run = w.submit(events.RunStartedV1{Name: "r"}).Run
	return w
}

// submit proposes a control event as the site admin and waits for it.
func (w *freshnessWorld) submit(p events.Payload) ingest.Outcome {
	w.t.Helper()
	out, err := w.in.Service.Submit(context.Background(), events.Event{Actor: "admin", Entity: "admin", Project: "p", Payload: p}, ingest.Wait)
	if err != nil {
		w.t.Fatalf("%s: %v", p.EventType(), err)
	}
	return out
}

// rows are the run's next 200 rows of 20 metrics.
func (w *freshnessWorld) rows() events.MetricsLoggedV2 {
	rs := make([]events.Row, 200)
	for i := range rs {
		v := make(map[string]events.Value, 20)
		for m := range 20 {
			v[fmt.Sprintf("m%02d", m)] = events.Value(float64(w.step) + float64(m))
		}
		rs[i] = events.Row{Step: w.step, Time: float64(time.Now().UnixNano()) / 1e9, Values: v}
		w.step++
	}
	return events.MustRows(rs)
}

// logNative logs a batch as the native API does; it returns how long it
// was held and its error.
func (w *freshnessWorld) logNative() (time.Duration, error) {
	start := time.Now()
	_, err := w.in.Service.LogRows(context.Background(), "admin", "", "admin", "p", w.run, w.rows())
	return time.Since(start), err
}

// behind reports whether err is the refusal of a batch held while the read
// model was behind.
func behind(t *testing.T, err error) bool {
	t.Helper()
	var e *errs.Error
	if err == nil {
		return false
	}
	if !errors.As(err, &e) || e.Kind != errs.RateLimited || e.Code != "read_model_behind" || e.RetryAfter <= 0 {
		t.Fatalf("want nil or a rate_limited read_model_behind refusal with a Retry-After, got %v", err)
	}
	return true
}

// refusedWithin logs native batches until one is refused because the read
// model is behind, and returns how long that one was held.
func (w *freshnessWorld) refusedWithin(d time.Duration) time.Duration {
	w.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		held, err := w.logNative()
		if behind(w.t, err) {
			return held
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("no batch refused within %s while the projector was paused: %+v", d, w.freshness.Status())
	return 0
}

// acceptedWithin logs native batches until one is accepted.
func (w *freshnessWorld) acceptedWithin(d time.Duration) {
	w.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if _, err := w.logNative(); !behind(w.t, err) {
			return
		}
	}
	w.t.Fatalf("no batch accepted within %s: %+v", d, w.freshness.Status())
}

// TestLaggingProjectorHoldsWriters: a projector that stops folding (a
// valve in its feed; it still announces its position) makes the edge hold
// native metric batches, then refuse them with 429 read_model_behind and a
// Retry-After, and hold W&B batches without refusing them, while run
// starts are still decided. Once the projector folds again, the held W&B
// batch goes in and native batches are accepted again.
func TestLaggingProjectorHoldsWriters(t *testing.T) {
	w := mustFreshnessWorld(t, 20*time.Second)
	w.acceptedWithin(10 * time.Second)
	w.valve.close()
	held := w.refusedWithin(15 * time.Second)
	if held < ingest.MaxHold {
		t.Errorf("a refused batch was held %s; want at least MaxHold (%s)", held, ingest.MaxHold)
	}
	wandb := make(chan error, 1)
	go func() {
		_, err := ingest.Holding{Service: w.in.Service}.LogRows(context.Background(), "admin", "", "admin", "p", w.run, w.rows())
		wandb <- err
	}()
	if out := w.submit(events.RunStartedV1{Name: "started while held"}); !out.Accepted || out.Run == "" {
		t.Fatalf("run start while metric batches are held: %+v", out)
	}
	select {
	case err := <-wandb:
		t.Fatalf("a W&B batch went through while the projector was paused (%v): %+v", err, w.freshness.Status())
	case <-time.After(2 * ingest.MaxHold):
	}
	if st := w.freshness.Status(); st.Behind <= w.freshness.MaxLag || st.Projectors != 1 {
		t.Fatalf("status while paused: %+v", st)
	}
	w.valve.release()
	if err := <-wandb; err != nil {
		t.Fatalf("the held W&B batch: %v", err)
	}
	w.acceptedWithin(30 * time.Second)
}

// TestDeadProjectorDoesNotBlockWrites: a projector that dies while behind
// holds writers for at most Silence; then the edge stops waiting for it.
func TestDeadProjectorDoesNotBlockWrites(t *testing.T) {
	silence := 5 * time.Second
	w := mustFreshnessWorld(t, silence)
	w.acceptedWithin(10 * time.Second)
	w.valve.close()
	w.refusedWithin(15 * time.Second)
	w.stopProj() // dies behind, without folding what it waited at
	w.acceptedWithin(silence + 30*time.Second)
	if st := w.freshness.Status(); st.Projectors != 0 || st.Ignored != 1 || st.Behind != 0 {
		t.Fatalf("status with the projector dead: %+v; want nobody waited for", st)
	}
}
