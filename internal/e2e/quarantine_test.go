package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// TestQuarantineUnreadableEvents: junk and a well-formed event of a type
// no binary knows, written into LB_EVENTS through a privileged connection
// (one on a project, one on the site admin's own entity), do not brick
// Logbook: it starts, its readiness and log name each sequence and the
// command that skips it, proposals on the affected project are refused
// (event_unreadable) while other projects work, the quarantine goes
// through the real path (the CLI over HTTP, a site-admin-only policy
// rule), the read model resumes by itself, nothing else is lost, the
// digest is equal across a restart, a verification replay and a live
// rebuild, and the site audit shows the decisions.
func TestQuarantineUnreadableEvents(t *testing.T) {
	query.QuarantinePoll = 100 * time.Millisecond
	dir := t.TempDir()
	start := func() system { return mustAllInOneWith(t, func(c *app.AllInOneConfig) { c.DataDir = dir }) }
	sys := start()
	admin := api{t, sys.WriteURL, adminKey}
	alice := api{t, sys.WriteURL, newUser(t, admin, "alice", "alice@example.com")}
	const proj, other = "/api/v1/projects/alice/proj", "/api/v1/projects/alice/other"
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "proj"}, nil)
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "other"}, nil)
	var run, done struct {
		Run string `json:"run_id"`
		Seq uint64 `json:"seq"`
	}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r"}, &run)
	rows := make([]map[string]any, 10)
	for i := range rows {
		rows[i] = map[string]any{"step": i, "values": map[string]any{"loss": 1 / float64(i+1)}}
	}
	alice.must(202, "POST", proj+"/runs/"+run.Run+"/log", map[string]any{"rows": rows}, nil)
	alice.must(200, "POST", proj+"/runs/"+run.Run+"/finish", map[string]any{"exit_code": 0}, &done)
	history := func(a api) string {
		var h json.RawMessage
		a.must(200, "GET", fmt.Sprintf("%s/runs/%s/history?min_seq=%d", proj, run.Run, done.Seq), nil, &h)
		return string(h)
	}
	before := history(alice)

	// A privileged connection (the components' own) writes what no
	// binary can read.
	nc, err := nats.Connect(sys.NATSURL, nats.UserInfo(sys.natsAuth.User, sys.natsAuth.Password))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	junk, err := bus.Append(ctx, js, bus.Msg{Subject: "lb.ev.alice.proj.run_started", ID: "junk-1", Data: []byte("\x00\xff not an event")})
	if err != nil {
		t.Fatal(err)
	}
	future, err := bus.Append(ctx, js, bus.Msg{Subject: "lb.ev.admin._.model_promoted", ID: "junk-2",
		Data: []byte(`{"id":"01JDX0000000000000000000ZZ","type":"model_promoted","v":1,"entity":"admin","actor":"admin","time":"2026-11-27T12:00:00Z","payload":{"model":"m"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	waitReady(t, sys, junk)

	// The affected project refuses writes with a message naming the
	// command; another project is served.
	var e apiError
	if st := alice.do("POST", proj+"/runs", map[string]any{"name": "r2"}, &e); st != 503 || e.Error.Code != "event_unreadable" ||
		!strings.Contains(e.Error.Message, events.QuarantineCommand(junk)) {
		t.Fatalf("run start in the affected project: %d %+v", st, e)
	}
	alice.must(201, "POST", other+"/runs", map[string]any{"name": "o"}, nil)

	// A restart starts (the decider skips what it cannot read); its log
	// and readiness name the sequence and the command.
	sys.stop()
	sys = start()
	admin, alice = api{t, sys.WriteURL, adminKey}, api{t, sys.WriteURL, alice.key}
	waitReady(t, sys, junk)
	if logs := sys.logs.String(); !strings.Contains(logs, "WARNING: the event at stream sequence "+strconv.FormatUint(junk, 10)) ||
		!strings.Contains(logs, events.QuarantineCommand(junk)) {
		t.Fatalf("the log does not name the command for seq %d:\n%s", junk, tail(logs))
	}

	// Only a site admin quarantines, and only events that cannot be read.
	body := func(seq uint64) map[string]any { return map[string]any{"seq": seq, "reason": "written by hand"} }
	if st := alice.do("POST", "/api/v1/log/quarantine", body(junk), &e); st != 403 {
		t.Fatalf("quarantine by a non-admin: %d %+v", st, e)
	}
	if st := admin.do("POST", "/api/v1/log/quarantine", body(done.Seq), &e); st != 400 || !strings.Contains(e.Error.Message, "readable") {
		t.Fatalf("quarantine of a readable event: %d %+v", st, e)
	}
	if st := admin.do("POST", "/api/v1/log/quarantine", body(future+100), &e); st != 400 {
		t.Fatalf("quarantine of a sequence beyond the log: %d %+v", st, e)
	}

	// The CLI over HTTP quarantines the junk; the read model resumes by
	// itself and stops at the next one, on the admin's own entity.
	t.Setenv("LOGBOOK_URL", sys.WriteURL)
	t.Setenv("LOGBOOK_API_KEY", adminKey)
	var out bytes.Buffer
	if err := cli.Run(ctx, []string{"log", "quarantine", "-seq", strconv.FormatUint(junk, 10), "-reason", "junk written by hand"}, &out); err != nil {
		t.Fatalf("logbook log quarantine: %v\n%s", err, out.String())
	}
	waitReady(t, sys, future)
	if st := admin.do("POST", "/api/v1/log/quarantine", body(junk), &e); st != 409 || e.Error.Code != "already_quarantined" {
		t.Fatalf("second quarantine of seq %d: %d %+v", junk, st, e)
	}
	out.Reset()
	if err := cli.Run(ctx, []string{"log", "quarantine", "-seq", strconv.FormatUint(future, 10), "-reason", "a type from a newer binary"}, &out); err != nil {
		t.Fatalf("logbook log quarantine: %v\n%s", err, out.String())
	}
	waitReady(t, sys, 0)

	// Everything else is intact and the project is served again.
	if got := history(alice); got != before {
		t.Fatalf("history after the quarantine:\n%s\nwant\n%s", got, before)
	}
	var r2 struct {
		Seq uint64 `json:"seq"`
	}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r2"}, &r2)
	var runs []json.RawMessage
	alice.must(200, "GET", fmt.Sprintf("%s/runs?min_seq=%d", proj, r2.Seq), nil, &runs)
	if len(runs) != 2 {
		t.Fatalf("runs of the project: %d, want 2", len(runs))
	}
	alice.must(200, "GET", fmt.Sprintf("%s/asof?seq=%d", proj, r2.Seq), nil, nil)

	// Digests: a verification replay, a restart and a live rebuild agree.
	d1 := verify(t, admin)
	sys.stop()
	sys = start()
	admin = api{t, sys.WriteURL, adminKey}
	waitReady(t, sys, 0)
	if d2 := verify(t, admin); d2 != d1 {
		t.Fatalf("digest after a restart %+v, before %+v", d2, d1)
	}
	if logs := sys.logs.String(); strings.Contains(logs, "cannot be read") {
		t.Fatalf("after the quarantines a restart still reports unreadable events:\n%s", tail(logs))
	}
	if d3 := rebuild(t, admin); d3 != d1 {
		t.Fatalf("digest after a rebuild %+v, before %+v", d3, d1)
	}

	// The decider, rebuilt at the restart, skips them too: the project
	// takes writes.
	alice = api{t, sys.WriteURL, alice.key}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r3"}, nil)

	// The site audit shows both decisions (and the refused attempts).
	var audit []struct {
		Type     string          `json:"type"`
		Actor    string          `json:"actor"`
		Accepted bool            `json:"accepted"`
		Details  json.RawMessage `json:"details"`
	}
	admin.must(200, "GET", "/api/v1/audit", nil, &audit)
	var seen []string
	for _, en := range audit {
		if en.Type == string(events.EventQuarantined) && en.Accepted {
			seen = append(seen, string(en.Details))
		}
	}
	// Newest first; the refused attempts are listed as refusals.
	if len(seen) != 2 || !strings.Contains(seen[1], fmt.Sprintf(`"seq":%d`, junk)) || !strings.Contains(seen[1], "junk written by hand") ||
		!strings.Contains(seen[0], fmt.Sprintf(`"seq":%d`, future)) {
		t.Fatalf("quarantines in the site audit: %v (of %+v)", seen, audit)
	}
}

// waitReady waits until readiness names stuck (the sequence and the
// quarantine command), or, for stuck 0, until the system is ready.
func waitReady(t *testing.T, sys system, stuck uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(sys.ReadURL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if stuck == 0 && resp.StatusCode == 200 {
				return
			}
			if stuck > 0 && resp.StatusCode == 503 && strings.Contains(last, fmt.Sprintf("stream sequence %d ", stuck)) &&
				strings.Contains(last, events.QuarantineCommand(stuck)) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("readiness never named seq %d (0: ready): last %q", stuck, last)
}

func verify(t *testing.T, admin api) projections.DigestInfo {
	t.Helper()
	var st query.ReadModelStatus
	admin.must(200, "GET", "/api/v1/admin/readmodel?verify=1", nil, &st)
	if st.Verify == nil || !st.Verify.Equal {
		t.Fatalf("verify: %+v", st.Verify)
	}
	return st.Verify.Live
}

func rebuild(t *testing.T, admin api) projections.DigestInfo {
	t.Helper()
	req, _ := http.NewRequest("POST", admin.base+"/api/v1/admin/readmodel/rebuild", nil)
	req.Header.Set("Authorization", "Bearer "+admin.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var last query.RebuildProgress
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &last)
	}
	if last.Error != "" || last.Digest == nil {
		t.Fatalf("rebuild: %+v", last)
	}
	return *last.Digest
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// TestQuarantineProcesses: the same with nats-server, ingest, projector and
// query as separate processes: junk in the log does not stop any of them,
// the affected project refuses writes, the CLI quarantines through ingest,
// and the projector resumes by itself (a write after the quarantine
// becomes visible through query).
func TestQuarantineProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	query.QuarantinePoll = 100 * time.Millisecond // (the projector process polls every second)
	sys := mustProcesses(t)
	admin := api{t, sys.WriteURL, adminKey}
	alice := api{t, sys.WriteURL, newUser(t, admin, "alice", "alice@example.com")}
	const proj = "/api/v1/projects/alice/proj"
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "proj"}, nil)
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r"}, nil)

	nc, err := nats.Connect(sys.NATSURL, nats.UserInfo(sys.natsAuth.User, sys.natsAuth.Password))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	junk, err := bus.Append(context.Background(), js, bus.Msg{Subject: "lb.ev.alice.proj.run_started", ID: "junk-1", Data: []byte("{not json")})
	nc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var e apiError
	if st := alice.do("POST", proj+"/runs", map[string]any{"name": "r2"}, &e); st != 503 || e.Error.Code != "event_unreadable" ||
		!strings.Contains(e.Error.Message, events.QuarantineCommand(junk)) {
		t.Fatalf("run start in the affected project: %d %+v", st, e)
	}
	t.Setenv("LOGBOOK_URL", sys.WriteURL)
	t.Setenv("LOGBOOK_API_KEY", adminKey)
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"log", "quarantine", "-seq", strconv.FormatUint(junk, 10), "-reason", "junk"}, &out); err != nil {
		t.Fatalf("logbook log quarantine: %v\n%s", err, out.String())
	}
	var r2 struct {
		Seq uint64 `json:"seq"`
	}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r2"}, &r2)
	reads := api{t, sys.ReadURL, alice.key}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var raw json.RawMessage
		var runs []json.RawMessage
		st := reads.do("GET", fmt.Sprintf("%s/runs?min_seq=%d", proj, r2.Seq), nil, &raw)
		if st == 200 && json.Unmarshal(raw, &runs) == nil && len(runs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projector did not resume: %d, %d runs", st, len(runs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if sys.alive != nil {
		if err := sys.alive(); err != nil {
			t.Fatal(err)
		}
	}
}
