package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// env is an embedded nats-server with the topology, and deciders on it.
type env struct {
	t   *testing.T
	url string
	cfg bus.Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

func mustEnv(t *testing.T, cfg bus.Config) *env {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, js, err := bus.Connect(bus.ClientURL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopology(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, url: bus.ClientURL(ns), cfg: cfg, nc: nc, js: js}
}

// decider starts a decider on its own connection; stop ends it (like a
// crash: nothing is flushed or acknowledged on the way out).
func (e *env) decider(seed bool, configure ...func(*Decider)) (d *Decider, stop func()) {
	e.t.Helper()
	nc, js, err := bus.Connect(e.url, "decider")
	if err != nil {
		e.t.Fatal(err)
	}
	d = NewDecider(nc, js, e.cfg.Subjects, slog.New(slog.DiscardHandler))
	if seed {
		d.Seed = &Seed{Username: "admin", KeyHash: policy.HashKey("admin-key")}
	}
	for _, c := range configure {
		c(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		e.t.Fatalf("decider stopped: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("decider not ready within 30s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("decider: %v", err)
			}
			nc.Close()
		})
	}
	e.t.Cleanup(stop)
	return d, stop
}

// propose publishes a proposal to the inbox as the edge does.
func (e *env) propose(actor string, p events.Event) events.Event {
	e.t.Helper()
	if p.ID == "" {
		p.ID = events.NewID(time.Now())
	}
	p.Actor, p.Type, p.Version, p.Time = actor, p.Payload.EventType(), events.CurrentVersion(p.Payload.EventType()), time.Now().UTC()
	data, err := events.Encode(p)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.js.PublishMsg(context.Background(), &nats.Msg{Subject: e.cfg.Subjects.Proposal(actor, p), Data: data}, jetstream.WithMsgID(p.ID))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// drained waits until every proposal is decided and acknowledged.
func (e *env) drained() {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, _ := e.js.Stream(context.Background(), bus.InboxStream)
		info, err := s.Info(context.Background())
		if err == nil && info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("proposals not decided within 60s: %+v %v", info.State, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// log reads the events stream into a fresh policy state and returns it
// with the events.
func (e *env) log() (*policy.State, []events.Event) {
	e.t.Helper()
	st := policy.NewState()
	var evs []events.Event
	err := bus.Read(context.Background(), e.js, bus.ReadOptions{Stream: bus.EventsStream}, func(b []bus.Entry) error {
		for _, en := range b {
			ev, err := events.Decode(en.Data)
			if err != nil {
				return err
			}
			st.Apply(en.Seq, ev)
			evs = append(evs, ev)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return st, evs
}

func byCause(evs []events.Event, cause string) int {
	n := 0
	for _, e := range evs {
		if e.Cause == cause {
			n++
		}
	}
	return n
}

// setup creates users alice, bob and carol and project alice/p where all
// three are Admins.
func (e *env) setup() {
	for _, u := range []string{"alice", "bob", "carol"} {
		e.propose("admin", events.Event{Entity: u, Payload: events.UserCreatedV1{Username: u, Email: u + "@example.com"}})
	}
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{}})
	for _, u := range []string{"bob", "carol"} {
		e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.MemberInvitedV1{Username: u, Role: events.RoleAdmin}})
	}
}

// TestSeveralDecidersKeepProjectRules: three deciders race on the same
// project: 150 run starts reusing 3 names, and the three Admins removing
// each other and leaving. Names stay unique and the project keeps an Admin.
func TestSeveralDecidersKeepProjectRules(t *testing.T) {
	e := mustEnv(t, bus.DefaultConfig())
	e.decider(true)
	e.setup()
	e.drained()
	// dave, a Member nobody removes, starts the runs (an Admin who starts
	// runs could be removed half-way, and the rest of their starts refused).
	e.propose("admin", events.Event{Entity: "dave", Payload: events.UserCreatedV1{Username: "dave"}})
	e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.MemberInvitedV1{Username: "dave", Role: events.RoleMember}})
	e.drained()
	e.decider(false)
	e.decider(false)
	admins := []string{"alice", "bob", "carol"}
	for i := 0; i < 150; i++ {
		e.propose("dave", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: fmt.Sprintf("run-%d", i%3)}})
		if i%10 == 0 {
			actor, target := admins[(i/10)%3], admins[(i/10+1)%3]
			e.propose(actor, events.Event{Entity: "alice", Project: "p", Payload: events.MemberRemovedV1{Username: target}})
			e.propose(target, events.Event{Entity: "alice", Project: "p", Payload: events.MemberRemovedV1{Username: target}})
		}
	}
	e.drained()
	st, evs := e.log()
	p, ok := st.Project("alice", "p")
	if !ok {
		t.Fatal("project gone")
	}
	if len(p.Names) != 150 || len(p.Runs) != 150 {
		t.Errorf("%d names for %d runs, want 150 of each", len(p.Names), len(p.Runs))
	}
	names := map[string]bool{}
	for _, ev := range evs {
		if pl, ok := ev.Payload.(events.RunStartedV1); ok {
			if names[pl.Name] {
				t.Errorf("run name %q given twice", pl.Name)
			}
			names[pl.Name] = true
		}
	}
	n := 0
	for _, r := range p.Members {
		if r == events.RoleAdmin {
			n++
		}
	}
	if n < 1 {
		t.Fatalf("the project lost its last Admin: members %v", p.Members)
	}
}

// TestResentAfterDuplicateWindow: proposals re-sent after JetStream's
// duplicate window (1s here), to a restarted decider, are applied once: a
// run start, an invite (two events, appended atomically) and a metric batch.
func TestResentAfterDuplicateWindow(t *testing.T) {
	cfg := bus.DefaultConfig()
	cfg.DuplicateWindow = time.Second
	e := mustEnv(t, cfg)
	_, stop := e.decider(true)
	e.setup()
	dave := e.propose("admin", events.Event{Entity: "dave", Payload: events.UserCreatedV1{Username: "dave"}})
	start := e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.RunStartedV1{Name: "once"}})
	e.drained()
	_, evs := e.log()
	run := evs[len(evs)-1].Run
	invite := e.propose("alice", events.Event{Entity: "alice", Project: "p", Payload: events.MemberInvitedV1{Username: "dave", Role: events.RoleViewer}})
	batch := e.propose("alice", events.Event{Entity: "alice", Project: "p", Run: run, Payload: events.MustRows([]events.Row{{Step: 0, Values: map[string]events.Value{"loss": 1}}})})
	e.drained()
	stop()
	_, before := e.log()

	time.Sleep(1500 * time.Millisecond) // past the duplicate window
	e.decider(false)
	for _, p := range []events.Event{dave, start, invite, batch} {
		p.Type = ""
		e.propose(p.Actor, p)
	}
	e.drained()
	_, after := e.log()
	if len(after) != len(before) {
		t.Fatalf("re-sent proposals appended %d more events", len(after)-len(before))
	}
	for name, c := range map[string]struct {
		cause string
		want  int
	}{"user": {dave.ID, 1}, "run start": {start.ID, 1}, "invite": {invite.ID, 2}, "metrics": {batch.ID, 1}} {
		if got := byCause(after, c.cause); got != c.want {
			t.Errorf("%s: %d events, want %d", name, got, c.want)
		}
	}
	// The inbox really took them again (the window had passed).
	s, _ := e.js.Stream(context.Background(), bus.InboxStream)
	info, _ := s.Info(context.Background())
	if info.State.LastSeq < 13 {
		t.Errorf("inbox last seq %d: the re-sent proposals were deduplicated by JetStream, not by the policy", info.State.LastSeq)
	}
}
