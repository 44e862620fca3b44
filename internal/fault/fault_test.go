package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// metricProposals returns n metric proposals of actor, one row each, spread
// over runs in round-robin, steps 0, 1, 2, ... per run.
func metricProposals(actor, entity, project string, runs []string, n int) []events.Event {
	t0 := time.Now()
	out := make([]events.Event, n)
	for i := range out {
		run := runs[i%len(runs)]
		step := int64(i / len(runs))
		out[i] = events.Event{ID: events.NewID(t0), Type: events.MetricsLogged, Version: 1, Entity: entity, Project: project, Run: run,
			Actor: actor, Time: t0, Payload: events.MustRows([]events.Row{{Step: step, Time: float64(step),
				Values: map[string]events.Value{"loss": events.Value(1 / float64(step+1)), "acc": events.Value(step)}}})}
	}
	return out
}

// killer SIGKILLs p at random points, restarting it each time, until done
// is closed and at least min kills happened. After each restart it waits
// for ready (if set), then minGap to 5*minGap, so that the process makes
// progress between kills however long its start takes.
func killer(t *testing.T, p *proc, min int, minGap time.Duration, ready func() bool, done <-chan struct{}) (kills chan int) {
	kills = make(chan int, 1)
	go func() {
		n := 0
		for {
			for start := time.Now(); ready != nil && !ready() && time.Since(start) < 2*time.Minute; {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(minGap + rand.N(4*minGap))
			select {
			case <-done:
				if n >= min {
					kills <- n
					return
				}
			default:
			}
			if p.exited() {
				t.Errorf("%s exited on its own:\n%s", p.name, tail(p.out.String(), 3000))
				kills <- n
				return
			}
			p.kill()
			n++
			p.start()
		}
	}()
	return kills
}

// TestKillProjector: the projector is killed with SIGKILL at random points
// while 200,000 events (1,000,000 with -long) are ingested; in the end its
// read model has every row exactly once and the same digest as a clean
// replay of the log.
func TestKillProjector(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: starts and kills real processes")
	}
	total, minKills := 200_000, 10
	if *long {
		total, minKills = 1_000_000, 20
	}
	s := mustNATS(t)
	s.ingest("ingest")
	alice := s.user("alice")
	s.must(alice, "POST", "/api/v1/projects", map[string]string{"entity": "alice", "name": "p"})
	var runs []string
	for i := 0; i < 20; i++ {
		out := s.must(alice, "POST", "/api/v1/projects/alice/p/runs", map[string]string{"name": "r"})
		runs = append(runs, out["run_id"].(string))
	}
	pj := s.projector("projector")
	base := s.streamInfo(bus.EventsStream).State.LastSeq

	done := make(chan struct{})
	kills := killer(t, pj, minKills, 300*time.Millisecond, nil, done)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s.propose(ctx, metricProposals("alice", "alice", "p", runs, total))
	want := base + uint64(total)
	eventually(t, 15*time.Minute, "all events appended", func() (bool, string) {
		last := s.streamInfo(bus.EventsStream).State.LastSeq
		return last >= want, fmt.Sprintf("events stream at %d of %d", last, want)
	})
	ingestTook := time.Since(start)
	close(done)
	n := <-kills
	if t.Failed() {
		return
	}

	// Every projector answers over NATS; wait until it caught up.
	eventually(t, 20*time.Minute, "projector caught up", func() (bool, string) {
		var st []query.ReadModelStatus
		out, err := s.tryCLI("projector", "status")
		if err == nil {
			err = json.Unmarshal(out, &st)
		}
		if err != nil || len(st) != 1 {
			return false, fmt.Sprintf("%v %v", st, err) // restarting after the last kill
		}
		return st[0].Seq == want, fmt.Sprintf("read model at %d of %d", st[0].Seq, want)
	})
	var verified []query.ReadModelStatus
	if err := json.Unmarshal(s.runCLI("projector", "digest", "-verify"), &verified); err != nil {
		t.Fatal(err)
	}
	if len(verified) != 1 || verified[0].Verify == nil || !verified[0].Verify.Equal {
		t.Fatalf("live read model differs from a clean replay: %+v", verified)
	}

	// A live rebuild over NATS gives the same read model.
	var rebuilt []query.ReadModelStatus
	if err := json.Unmarshal(s.runCLI("projector", "rebuild"), &rebuilt); err != nil {
		t.Fatal(err)
	}
	if len(rebuilt) != 1 || rebuilt[0].Digest == nil || *rebuilt[0].Digest != verified[0].Verify.Live {
		t.Fatalf("projector rebuild: %+v, want %+v", rebuilt, verified[0].Verify.Live)
	}

	// 0 lost, 0 applied twice: every run has each of its rows once.
	reader := bus.NATSReader{NC: s.nc, Subject: bus.ReadSubject(events.DefaultPrefix)}
	data, err := reader.Read(context.Background(), query.Request{KeyHash: policy.HashKey(alice), Op: query.OpRuns, Entity: "alice", Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var views []query.RunView
	if err := json.Unmarshal(data, &views); err != nil {
		t.Fatal(err)
	}
	var rows, lost, twice int64
	for _, v := range views {
		perRun := int64(total / len(runs))
		rows += v.Rows
		if v.Rows < perRun {
			lost += perRun - v.Rows
		}
		if v.Rows > perRun || v.Metrics["loss"].Count != v.Rows {
			twice += v.Rows - perRun
		}
		if v.LastStep != perRun-1 {
			t.Errorf("run %s: last step %d, want %d", v.ID, v.LastStep, perRun-1)
		}
	}
	t.Logf("projector fault test: %d events, %d kills, %d rows in the read model, %d lost, %d applied twice; ingest took %s; digest %s at seq %d",
		total, n, rows, lost, twice, ingestTook.Round(time.Second), verified[0].Verify.Live.Digest[:16], verified[0].Verify.Live.Seq)
	if len(views) != len(runs) || rows != int64(total) || lost != 0 || twice != 0 {
		t.Fatalf("%d runs, %d rows (want %d): %d lost, %d applied twice", len(views), rows, total, lost, twice)
	}
	if n < minKills {
		t.Fatalf("only %d kills", n)
	}
}

// TestKillIngest: ingest is killed with SIGKILL at random points while it
// decides 50,000 proposals (1,000,000 with -long), 10% of them forbidden
// (a Viewer starting runs and logging to others' runs), the rest metric
// batches and run starts that reuse names: in the end every allowed
// proposal produced its events exactly once, no forbidden one did, and run
// names are unique.
func TestKillIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: starts and kills real processes")
	}
	total, minKills := 50_000, 10
	if *long {
		total, minKills = 1_000_000, 20
	}
	s := mustNATS(t)
	in := s.ingest("ingest")
	alice := s.user("alice")
	s.user("bob")
	s.must(alice, "POST", "/api/v1/projects", map[string]string{"entity": "alice", "name": "p"})
	s.must(alice, "POST", "/api/v1/projects/alice/p/members", map[string]string{"username": "bob", "role": "viewer"})
	var runs []string
	for i := 0; i < 10; i++ {
		out := s.must(alice, "POST", "/api/v1/projects/alice/p/runs", map[string]string{"name": "base"})
		runs = append(runs, out["run_id"].(string))
	}
	// Every 10th proposal is forbidden, every 50th a run start, the rest
	// metric batches.
	metricsN := 0
	for i := 0; i < total; i++ {
		if i%10 != 9 && i%50 != 0 {
			metricsN++
		}
	}
	ps := metricProposals("alice", "alice", "p", runs, metricsN)
	allowed := map[string]events.Type{}
	forbidden := map[string]bool{}
	t0 := time.Now()
	mixed := make([]events.Event, 0, total)
	for i := 0; i < total; i++ {
		id := events.NewID(t0)
		switch {
		case i%10 == 9 && (i/10)%2 == 0:
			mixed = append(mixed, events.Event{ID: id, Type: events.RunStarted, Version: 1, Entity: "alice", Project: "p", Actor: "bob", Time: t0,
				Payload: events.RunStartedV1{Name: "bobs-run"}})
			forbidden[id] = true
		case i%10 == 9:
			mixed = append(mixed, events.Event{ID: id, Type: events.MetricsLogged, Version: 1, Entity: "alice", Project: "p", Run: runs[0], Actor: "bob", Time: t0,
				Payload: events.MustRows([]events.Row{{Step: 1 << 40, Values: map[string]events.Value{"x": 1}}})})
			forbidden[id] = true
		case i%50 == 0:
			// Names repeat: dedup must give name, name-2, ... once each.
			mixed = append(mixed, events.Event{ID: id, Type: events.RunStarted, Version: 1, Entity: "alice", Project: "p", Actor: "alice", Time: t0,
				Payload: events.RunStartedV1{Name: fmt.Sprintf("sweep-%d", i%7)}})
			allowed[id] = events.RunStarted
		default:
			p := ps[0]
			ps = ps[1:]
			mixed = append(mixed, p)
			allowed[p.ID] = p.Type
		}
	}
	base := s.streamInfo(bus.EventsStream).State.LastSeq

	// The proposals go out in 40 parts; after a part, at a random point of
	// its decisions (while proposals are still waiting), ingest is killed
	// and restarted, until it has been killed minKills times.
	ready := func() bool { st, _ := s.call(adminKey, "POST", "/api/v1/users", map[string]string{}); return st == 400 }
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	parts := 40
	per := (len(mixed) + parts - 1) / parts
	n := 0
	for i := 0; i*per < len(mixed); i++ {
		s.propose(ctx, mixed[i*per:min((i+1)*per, len(mixed))])
		if n >= minKills {
			continue
		}
		time.Sleep(rand.N(300 * time.Millisecond))
		if s.streamInfo(bus.InboxStream).State.Msgs == 0 {
			continue // decided already: not a point during decisions
		}
		if in.exited() {
			t.Fatalf("ingest exited on its own:\n%s", tail(in.out.String(), 3000))
		}
		in.kill()
		n++
		in.start()
		for start := time.Now(); !ready() && time.Since(start) < 2*time.Minute; {
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually(t, 15*time.Minute, "inbox drained", func() (bool, string) {
		n := s.streamInfo(bus.InboxStream).State.Msgs
		return n == 0, fmt.Sprintf("%d proposals left", n)
	})
	took := time.Since(start)
	seen := map[string]int{}
	names := map[string]int{}
	var accepted, forbiddenAccepted, dup int
	for _, e := range s.events() {
		if e.Cause == "" {
			continue
		}
		if forbidden[e.Cause] {
			forbiddenAccepted++
		}
		if _, ok := allowed[e.Cause]; ok {
			seen[e.Cause]++
			if seen[e.Cause] > 1 {
				dup++
			}
			accepted++
		}
		if pl, ok := e.Payload.(events.RunStartedV1); ok && e.Project == "p" {
			names[pl.Name]++
		}
	}
	missing := 0
	for id := range allowed {
		if seen[id] == 0 {
			missing++
		}
	}
	dupNames := 0
	for name, c := range names {
		if c > 1 {
			dupNames++
			t.Errorf("run name %q used %d times", name, c)
		}
	}
	t.Logf("ingest fault test: %d proposals (%d forbidden), %d kills in %s: %d events appended after seq %d, %d missing, %d duplicated, %d forbidden accepted, %d duplicate run names",
		len(mixed), len(forbidden), n, took.Round(time.Second), accepted, base, missing, dup, forbiddenAccepted, dupNames)
	if missing != 0 || dup != 0 || forbiddenAccepted != 0 {
		t.Fatalf("%d missing, %d duplicated, %d forbidden accepted", missing, dup, forbiddenAccepted)
	}
	if n < minKills {
		t.Fatalf("only %d kills", n)
	}
}
