package http_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	lbhttp "github.com/logbook/logbook/http"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
)

// writeSide is ingest on a real embedded NATS server with JetStream.
type writeSide struct {
	t     *testing.T
	d     *ingest.Decider
	p     *ingest.Proposer
	srv   *httptest.Server
	sw    *ingest.Sweeper
	nats  string
	admin string
}

const testAdminKey = "lb-test0000000000000000000000000000000000000000admin"

func mustWriteSide(t *testing.T, crashAfter time.Duration) *writeSide {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, js, err := bus.Connect(bus.ClientURL(ns), "ingest-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := bus.DefaultConfig()
	if err := bus.EnsureTopology(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	d := ingest.NewDecider(nc, js, cfg.Subjects, discard())
	d.Seed = &ingest.Seed{Username: "admin", KeyHash: policy.HashKey(testAdminKey)}
	d.SetCrashAfter(crashAfter)
	p := ingest.NewProposer(nc, js, cfg.Subjects)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("decider: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("decider: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("decider not ready in 30s")
	}
	svc := &ingest.Service{Decider: d, Proposer: p}
	srv := httptest.NewServer(lbhttp.Handler(false, &lbhttp.Writes{Ingest: svc, Log: discard()}))
	t.Cleanup(srv.Close)
	return &writeSide{t: t, d: d, p: p, srv: srv, nats: bus.ClientURL(ns), admin: testAdminKey,
		sw: &ingest.Sweeper{Ingest: svc, CrashAfter: crashAfter}}
}

// call sends a request with key and decodes the answer into out.
func (w *writeSide) call(key, method, path string, body any, out any) int {
	w.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, w.srv.URL+path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (w *writeSide) must(want int, key, method, path string, body any, out any) {
	w.t.Helper()
	var raw json.RawMessage
	if got := w.call(key, method, path, body, &raw); got != want {
		w.t.Fatalf("%s %s: %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *writeSide) user(name string) string {
	w.t.Helper()
	w.must(201, w.admin, "POST", "/api/v1/users", map[string]string{"username": name}, nil)
	var k struct{ Key string }
	w.must(201, w.admin, "POST", "/api/v1/users/"+name+"/keys", map[string]string{"name": "t"}, &k)
	return k.Key
}

func (w *writeSide) run(entity, project, id string) policy.Run {
	var r policy.Run
	w.d.View(func(s *policy.State) {
		if p, ok := s.Project(entity, project); ok && p.Runs[id] != nil {
			r = *p.Runs[id]
		}
	})
	return r
}

func (w *writeSide) seq(entity, project string) uint64 {
	var n uint64
	w.d.View(func(s *policy.State) { n = s.Seq(entity, project) })
	return n
}

// TestCrashSweepHeartbeatAndRecovery drives the sweeper with a chosen clock:
// the policy decides from event times, so the test needs no sleeping on the
// crash timeout.
func TestCrashSweepHeartbeatAndRecovery(t *testing.T) {
	w := mustWriteSide(t, time.Minute)
	ctx := context.Background()
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	const runs = "/api/v1/projects/bob/p/runs"
	var out ingest.Outcome
	w.must(201, bob, "POST", runs, map[string]any{"id": "r1"}, &out)
	if out.LastStep == nil || *out.LastStep != -1 {
		t.Fatalf("start outcome %+v, want last_step -1", out)
	}
	start := w.run("bob", "p", "r1").LastActivity

	if n, err := w.sw.SweepOnce(ctx, start.Add(59*time.Second)); err != nil || n != 0 {
		t.Fatalf("sweep before the timeout: %d crashed, err %v", n, err)
	}
	if n, err := w.sw.SweepOnce(ctx, start.Add(61*time.Second)); err != nil || n != 1 {
		t.Fatalf("sweep after the timeout: %d crashed, err %v", n, err)
	}
	if st := w.run("bob", "p", "r1").State; st != events.StateCrashed {
		t.Fatalf("state %q, want crashed", st)
	}
	// A second sweep changes nothing.
	if n, _ := w.sw.SweepOnce(ctx, start.Add(2*time.Minute)); n != 0 {
		t.Fatalf("second sweep crashed %d runs", n)
	}

	// A heartbeat revives it.
	w.must(200, bob, "POST", runs+"/r1/heartbeat", nil, &out)
	if out.RunState != events.StateRunning || out.Seq == 0 {
		t.Fatalf("heartbeat of a crashed run: %+v, want a recorded heartbeat and running", out)
	}
	// A heartbeat right after activity records nothing.
	before := w.seq("bob", "p")
	w.must(200, bob, "POST", runs+"/r1/heartbeat", nil, &out)
	if w.seq("bob", "p") != before || out.RunState != events.StateRunning {
		t.Fatalf("second heartbeat: %+v, want nothing recorded", out)
	}

	// Crash again, then log: running again.
	beat := w.run("bob", "p", "r1").LastActivity
	if n, _ := w.sw.SweepOnce(ctx, beat.Add(time.Minute)); n != 1 {
		t.Fatal("not crashed after the heartbeat's timeout")
	}
	w.must(202, bob, "POST", runs+"/r1/log", map[string]any{"rows": []map[string]any{{"step": 0, "values": map[string]float64{"loss": 1}}, {"step": 7, "values": map[string]float64{"loss": 0.5}}}}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for w.run("bob", "p", "r1").State != events.StateRunning {
		if time.Now().After(deadline) {
			t.Fatal("a crashed run that logged did not return to running")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Killed, then resumed: the outcome tells the client where steps continue.
	w.must(200, bob, "POST", runs+"/r1/finish", map[string]any{"state": "killed"}, &out)
	if out.RunState != events.StateKilled {
		t.Fatalf("finish killed: %+v", out)
	}
	if n, _ := w.sw.SweepOnce(ctx, time.Now().Add(time.Hour)); n != 0 {
		t.Fatal("a killed run was marked crashed")
	}
	var e struct{ Error policy.Rejection }
	if st := w.call(bob, "POST", runs+"/r1/heartbeat", nil, &e); st != 409 || e.Error.Code != policy.CodeRunFinished {
		t.Fatalf("heartbeat of a killed run: %d %+v", st, e)
	}
	w.must(201, bob, "POST", runs, map[string]any{"id": "r1", "resume": "must"}, &out)
	if out.LastStep == nil || *out.LastStep != 7 || out.RunState != events.StateRunning {
		t.Fatalf("resume outcome %+v, want running with last_step 7", out)
	}

	// A decider rebuilt from the log has the same liveness and states.
	nc, js, err := bus.Connect(w.nats, "rebuild")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	d2 := ingest.NewDecider(nc, js, bus.DefaultConfig().Subjects, discard())
	ctx2, cancel2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- d2.Run(ctx2) }()
	select {
	case <-d2.Ready():
	case err := <-done2:
		t.Fatal(err)
	}
	cancel2()
	<-done2
	var r2 policy.Run
	d2.View(func(s *policy.State) {
		p, _ := s.Project("bob", "p")
		r2 = *p.Runs["r1"]
	})
	if r1 := w.run("bob", "p", "r1"); !reflect.DeepEqual(r1, r2) {
		t.Fatalf("live run %+v, rebuilt %+v", r1, r2)
	}
}

// TestSweeperRuns: the sweeper's own loop marks a quiet run crashed (a
// short timeout; the test only waits for it to happen).
func TestSweeperRuns(t *testing.T) {
	w := mustWriteSide(t, 300*time.Millisecond)
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	w.must(201, bob, "POST", "/api/v1/projects/bob/p/runs", map[string]any{"id": "quiet"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.sw.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(60 * time.Second)
	for w.run("bob", "p", "quiet").State != events.StateCrashed {
		if time.Now().After(deadline) {
			t.Fatal("the quiet run was not marked crashed within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestPendingArtifactsExpire: the sweeper deletes (as the system actor) a
// version created and never committed, once it has been pending for
// policy.PendingArtifactTTL by the sweeper's clock, and only then; a
// committed version is untouched.
func TestPendingArtifactsExpire(t *testing.T) {
	w := mustWriteSide(t, time.Minute)
	ctx := context.Background()
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	svc := w.sw.Ingest
	for _, id := range []string{"01JDX00000000000000000ART1", "01JDX00000000000000000ART2"} {
		if _, err := svc.Submit(ctx, events.Event{Actor: "bob", Entity: "bob", Project: "p", Payload: events.ArtifactCreatedV1{
			ArtifactID: id, Collection: "ds", Type: "dataset", Digest: "d-" + id}}, ingest.Wait); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Submit(ctx, events.Event{Actor: "bob", Entity: "bob", Project: "p",
		Payload: events.ArtifactCommittedV1{ArtifactID: "01JDX00000000000000000ART2"}}, ingest.Wait); err != nil {
		t.Fatal(err)
	}
	state := func(id string) string {
		var st string
		w.d.View(func(s *policy.State) {
			if a, _ := s.Artifact(id); a != nil {
				st = a.State
			}
		})
		return st
	}
	now := time.Now()
	if n, err := w.sw.ExpireArtifacts(ctx, now.Add(policy.PendingArtifactTTL-time.Minute)); err != nil || n != 0 {
		t.Fatalf("expiry before the TTL: %d, %v", n, err)
	}
	if n, err := w.sw.ExpireArtifacts(ctx, now.Add(policy.PendingArtifactTTL+time.Minute)); err != nil || n != 1 {
		t.Fatalf("expiry after the TTL: %d, %v", n, err)
	}
	if a, b := state("01JDX00000000000000000ART1"), state("01JDX00000000000000000ART2"); a != policy.ArtifactDeleted || b != policy.ArtifactCommitted {
		t.Fatalf("states after expiry: pending one %s, committed one %s", a, b)
	}
	if n, _ := w.sw.ExpireArtifacts(ctx, now.Add(2*policy.PendingArtifactTTL)); n != 0 {
		t.Fatalf("second expiry deleted %d", n)
	}
}
