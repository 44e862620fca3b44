package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

const aliceKey = "lb-alice00000000000000000000000000000000000000000000"

// readers starts a read model on a real embedded NATS server with a small
// project in its log, and returns every implementation of query.Reader over
// it: the in-process reader (the all-in-one) and the NATS read service (the
// separate query process).
func readers(t *testing.T) map[string]query.Reader {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := bus.Dial(ctx, bus.ClientURL(ns), "reads-test", bus.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var rows []events.Row
	for i := range 5000 {
		v := events.Value(1 / float64(i+1))
		if i == 17 {
			v = events.Value(math.NaN())
		}
		rows = append(rows, events.Row{Step: int64(i), Time: float64(at.Unix()) + float64(i), Values: map[string]events.Value{"loss": v, "acc": events.Value(i)}})
	}
	log := []events.Event{
		{Type: events.UserCreated, Entity: "alice", Payload: events.UserCreatedV1{Username: "alice"}},
		{Type: events.KeyCreated, Entity: "alice", Payload: events.KeyCreatedV1{Username: "alice", KeyID: "k1", Hash: policy.HashKey(aliceKey)}},
		{Type: events.ProjectCreated, Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}},
		{Type: events.RunStarted, Entity: "alice", Project: "p", Run: "r1", Payload: events.RunStartedV1{RunID: "r1", Name: "r1", Config: json.RawMessage(`{"lr":0.1}`)}},
		{Type: events.MetricsLogged, Entity: "alice", Project: "p", Run: "r1", Payload: events.MustRows(rows[:2500])},
		{Type: events.MetricsLogged, Entity: "alice", Project: "p", Run: "r1", Payload: events.MustRows(rows[2500:])},
	}
	for i, e := range log {
		e.ID, e.Actor, e.Time = events.NewID(at), "alice", at.Add(time.Duration(i)*time.Second)
		data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Append(ctx, c.JS, bus.Msg{Subject: c.Subject.Event(e), ID: e.ID, Data: data}); err != nil {
			t.Fatal(err)
		}
	}

	rm, err := query.OpenReadModel(c.EventLog(), c.Subject, projections.Options{InMemory: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rm.Run(ctx) }()
	svc, err := bus.ServeReads(c.NC, c.Subject.Prefix, rm.Reader, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = svc.Stop()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("read model: %v", err)
		}
	})
	return map[string]query.Reader{"in-process": rm.Reader, "nats": c.Reader()}
}

func read(t *testing.T, r query.Reader, req query.Request) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req.KeyHash = policy.HashKey(aliceKey)
	req.MinSeq = 6 // every event of the log above
	return r.Read(ctx, req)
}

// TestReaderContract: every reader answers the same requests with the same
// documents and the same coded errors.
func TestReaderContract(t *testing.T) {
	rs := readers(t)
	cases := map[string]query.Request{
		"projects":             {Op: query.OpProjects},
		"run":                  {Op: query.OpRun, Entity: "alice", Project: "p", Run: "r1"},
		"history":              {Op: query.OpHistory, Entity: "alice", Project: "p", Run: "r1", MinStep: 10, MaxStep: 20},
		"search":               {Op: query.OpSearchRuns, Entity: "alice", Project: "p", Runs: &query.RunsRequest{}},
		"sampled":              {Op: query.OpDownsample, Entity: "alice", Project: "p", Run: "r1", Metric: "loss", Runs: &query.RunsRequest{Buckets: 50}},
		"artifact collections": {Op: query.OpArtifactCollections, Entity: "alice", Project: "p"},
		"run artifacts":        {Op: query.OpRunArtifacts, Entity: "alice", Project: "p", Run: "r1"},
	}
	for name, req := range cases {
		var want json.RawMessage
		for impl, r := range rs {
			got, err := read(t, r, req)
			if err != nil {
				t.Fatalf("%s %s: %v", impl, name, err)
			}
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s: readers disagree:\n%s\n%s", name, want, got)
			}
		}
	}
	failures := map[string]struct {
		req  query.Request
		kind errs.Kind
		code string
	}{
		"unknown run":     {query.Request{Op: query.OpRun, Entity: "alice", Project: "p", Run: "nope"}, errs.NotFound, "run_not_found"},
		"unknown project": {query.Request{Op: query.OpRun, Entity: "alice", Project: "q", Run: "r1"}, errs.NotFound, "project_not_found"},
		"bad op":          {query.Request{Op: "drop"}, errs.Invalid, "invalid"},
		"no metric":       {query.Request{Op: query.OpDownsample, Entity: "alice", Project: "p", Run: "r1", Runs: &query.RunsRequest{Buckets: 5}}, errs.Invalid, "invalid"},
		"unknown collection": {query.Request{Op: query.OpArtifact, Entity: "alice", Project: "p", Collection: "nope", Version: "v0"},
			errs.NotFound, "artifact_collection_not_found"},
		"unknown artifact id": {query.Request{Op: query.OpArtifact, Version: "01JDX0000000000000000000Q0"}, errs.NotFound, "artifact_not_found"},
	}
	for name, f := range failures {
		for impl, r := range rs {
			_, err := read(t, r, f.req)
			e, ok := errs.As(err)
			if !ok || e.Kind != f.kind || e.Code != f.code {
				t.Errorf("%s %s: %v (%+v), want %s/%s", impl, name, err, e, f.kind, f.code)
			}
		}
	}
	// A bad key is refused the same way.
	for impl, r := range rs {
		_, err := r.Read(context.Background(), query.Request{KeyHash: "nope", Op: query.OpProjects})
		if errs.KindOf(err) != errs.Unauthenticated {
			t.Errorf("%s: a bad key read: %v", impl, err)
		}
	}
}

// TestExportStreamsInBothModes: the in-process reader streams an export
// from the read model (query.Exporter); the NATS reader is read page by page
// (as package http does); both give the same bytes, NaN included.
func TestExportStreamsInBothModes(t *testing.T) {
	rs := readers(t)
	ex, ok := rs["in-process"].(query.Exporter)
	if !ok {
		t.Fatal("the in-process reader does not stream exports (query.Exporter)")
	}
	for _, format := range []string{"ndjson", "csv"} {
		req := query.Request{KeyHash: policy.HashKey(aliceKey), Op: query.OpExport, Entity: "alice", Project: "p", Run: "r1",
			MinSeq: 6, Runs: &query.RunsRequest{Format: format}}
		var streamed bytes.Buffer
		started := false
		if err := ex.Export(context.Background(), req, &streamed, func() { started = true }); err != nil {
			t.Fatal(err)
		}
		if !started {
			t.Fatal("export never started")
		}
		paged := exportPaged(t, rs["nats"], req)
		if !bytes.Equal(streamed.Bytes(), paged) {
			t.Fatalf("%s: streamed %d bytes, paged %d bytes; they differ", format, streamed.Len(), len(paged))
		}
		lines := strings.Count(streamed.String(), "\n")
		want := 5000
		if format == "csv" {
			want++ // header
		}
		if lines != want {
			t.Errorf("%s export has %d lines, want %d", format, lines, want)
		}
	}
}

func exportPaged(t *testing.T, r query.Reader, req query.Request) []byte {
	t.Helper()
	rr := *req.Runs
	req.Runs = &rr
	req.Runs.Header, req.Runs.MaxBytes = true, 64<<10 // small pages: several round trips
	var out bytes.Buffer
	for pages := 0; ; pages++ {
		data, err := r.Read(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		var page query.ExportPage
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(&out, page.Text)
		if !page.More {
			if pages == 0 {
				t.Fatal("the export fit one page: the test does not page")
			}
			return out.Bytes()
		}
		req.Runs.From, req.Runs.Header = page.Next, false
	}
}
