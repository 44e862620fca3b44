package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/forgery"
)

// TestForgery makes more than 2,000 forgery attempts through HTTP and
// through NATS connections made with a user's key against the all-in-one
// (embedded server), and checks after each batch that none changed the
// events stream, the rejections already recorded, the W&B buckets or the
// read model, and that Logbook is alive.
func TestForgery(t *testing.T) {
	sys := mustAllInOneWith(t, func(c *app.AllInOneConfig) { c.KeyRate, c.KeyBurst = 1e6, 1e6 })
	runForgery(t, sys)
}

// TestForgeryProcesses is TestForgery against nats-server with
// deploy/nats.conf and auth.conf as shipped, and ingest, projector and
// query as separate processes.
func TestForgeryProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	sys := mustProcesses(t, "-http.key-rate", "1000000", "-http.key-burst", "1000000")
	runForgery(t, sys)
}

// rejection is ingest.RejectionRecord as stored.
type rejection struct {
	Actor string `json:"actor"`
	Code  string `json:"code"`
}

// streamSnapshot is every message of a stream, hashed one by one.
type streamSnapshot struct {
	first, last uint64
	msgs        map[uint64]string
}

func snapshotStream(t *testing.T, js jetstream.JetStream, name string) streamSnapshot {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := streamSnapshot{first: info.State.FirstSeq, last: info.State.LastSeq, msgs: map[uint64]string{}}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("%s seq %d: %v", name, seq, err)
		}
		hdr, _ := json.Marshal(m.Header)
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s", m.Subject, hdr, m.Time.UnixNano(), m.Data))
		snap.msgs[seq] = hex.EncodeToString(sum[:])
	}
	return snap
}

// runForgery is the forgery test against a running system.
func runForgery(t *testing.T, sys system) {
	w := newAccessWorld(t, sys)
	mallory := "none" // outside the team
	// mallory is also a Viewer of one project, and a Member of another
	// where the owner has a run.
	ow := api{t, sys.WriteURL, w.keys["owner"]}
	ow.must(200, "POST", "/api/v1/projects/acme/proj/members", map[string]string{"username": "none", "role": "viewer"}, nil)
	ow.must(201, "POST", "/api/v1/projects", map[string]string{"entity": "owner", "name": "shared"}, nil)
	ow.must(200, "POST", "/api/v1/projects/owner/shared/members", map[string]string{"username": "none", "role": "member"}, nil)
	var run2 struct {
		RunID string `json:"run_id"`
		Seq   uint64
	}
	ow.must(201, "POST", "/api/v1/projects/owner/shared/runs", map[string]string{"name": "owners"}, &run2)
	ow.must(201, "POST", "/api/v1/projects", map[string]string{"entity": "owner", "name": "private"}, nil)
	// A user who belongs to no team or project (the reported reproduction).
	nobody := "nobody"
	nobodyKey := newUser(t, api{t, sys.WriteURL, adminKey}, nobody, "")
	var last struct {
		Seq uint64 `json:"seq"`
	}
	ow.must(201, "POST", "/api/v1/projects/owner/private/runs", map[string]string{"name": "secret"}, &last)
	// The W&B adapter's upload signing key (KV) and a stored file (object
	// store), through W&B's own calls.
	uploadURL := func() string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"operationName": "CreateRunFiles",
			"query":     `mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }`,
			"variables": map[string]any{"entity": "owner", "project": "shared", "run": run2.RunID, "files": []string{"config.yaml"}}})
		req, _ := http.NewRequest("POST", sys.WriteURL+"/graphql", bytes.NewReader(body))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("api:"+w.keys["owner"])))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				CreateRunFiles struct {
					Files []struct {
						UploadURL string `json:"uploadUrl"`
					} `json:"files"`
				} `json:"createRunFiles"`
			} `json:"data"`
		}
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil || len(out.Data.CreateRunFiles.Files) != 1 {
			t.Fatalf("CreateRunFiles: %d %s", resp.StatusCode, b)
		}
		return out.Data.CreateRunFiles.Files[0].UploadURL
	}
	upload := func(u, content string) int {
		t.Helper()
		req, _ := http.NewRequest("PUT", u, strings.NewReader(content))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := upload(uploadURL(), "lr: 0.1"); st != 200 {
		t.Fatalf("W&B upload: %d", st)
	}

	nc, err := nats.Connect(sys.NATSURL, nats.UserInfo(sys.natsAuth.User, sys.natsAuth.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	waitIdle := func() {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for {
			ci, err := js.Consumer(ctx, bus.InboxStream, bus.DeciderConsumer)
			if err != nil {
				t.Fatal(err)
			}
			info, err := ci.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
			if time.Now().After(deadline) {
				if sys.logs != nil {
					for _, l := range strings.Split(sys.logs.String(), "\n") {
						if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
							t.Log(l)
						}
					}
				}
				if st, err := js.Stream(ctx, bus.InboxStream); err == nil {
					for seq := info.Delivered.Stream - 2; seq <= info.Delivered.Stream+2; seq++ {
						if m, err := st.GetMsg(ctx, seq); err == nil {
							t.Logf("inbox %d: %s %v %q", seq, m.Subject, m.Header, m.Data)
						}
					}
				}
				var gb bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&gb, 2)
				for _, g := range strings.Split(gb.String(), "\n\n") {
					if strings.Contains(g, "logbook/ingest") || strings.Contains(g, "pullConsumer") {
						t.Log(g)
					}
				}
				t.Fatalf("proposals not decided within 120s: pending %d, ack pending %d, delivered %d", info.NumPending, info.NumAckPending, info.Delivered.Stream)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	readModel := func() string {
		t.Helper()
		m, err := nc.Request("lb.admin.readmodel.digest", []byte("{}"), 60*time.Second)
		if err != nil {
			t.Fatalf("read-model digest: %v", err)
		}
		var st struct {
			Digest struct {
				Digest string `json:"digest"`
				Seq    uint64 `json:"seq"`
				Keys   int64  `json:"keys"`
			} `json:"digest"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &st); err != nil || st.Error != "" || st.Digest.Digest == "" {
			t.Fatalf("read-model digest: %s %v", m.Data, err)
		}
		return fmt.Sprintf("digest %s at seq %d (%d keys)", st.Digest.Digest, st.Digest.Seq, st.Digest.Keys)
	}
	dump := func() string {
		t.Helper()
		var b strings.Builder
		for _, u := range []string{"owner", "none", "admin"} {
			r := api{t, sys.ReadURL, w.keys[u]}
			var projects []map[string]any
			r.must(200, "GET", fmt.Sprintf("/api/v1/projects?min_seq=%d", last.Seq), nil, &projects)
			fmt.Fprintf(&b, "%s projects %v\n", u, projects)
			for _, p := range projects {
				base := fmt.Sprintf("/api/v1/projects/%s/%s", p["entity"], p["name"])
				var raw json.RawMessage
				r.must(200, "GET", base+"/members", nil, &raw)
				fmt.Fprintf(&b, "%s members %s\n", base, raw)
				var runs []map[string]any
				r.must(200, "GET", base+"/runs", nil, &runs)
				fmt.Fprintf(&b, "%s runs %v\n", base, runs)
				for _, rn := range runs {
					r.must(200, "GET", fmt.Sprintf("%s/runs/%s/history", base, rn["id"]), nil, &raw)
					fmt.Fprintf(&b, "%s history %s\n", rn["id"], raw)
				}
			}
			var whoami json.RawMessage
			r.must(200, "GET", "/api/v1/whoami", nil, &whoami)
			fmt.Fprintf(&b, "whoami %s\n", whoami)
		}
		for _, u := range []string{"owner", "none", "sa-target"} {
			var raw json.RawMessage
			api{t, sys.WriteURL, adminKey}.must(200, "GET", "/api/v1/users/"+u+"/keys", nil, &raw)
			fmt.Fprintf(&b, "%s keys %s\n", u, raw)
		}
		return b.String()
	}
	protected := []string{bus.EventsStream, "KV_logbook_wandb", "OBJ_logbook_wandb_files"}
	type state struct {
		streams    map[string]streamSnapshot
		rejections streamSnapshot
		readModel  string
		dump       string
	}
	take := func() state {
		waitIdle()
		s := state{streams: map[string]streamSnapshot{}, rejections: snapshotStream(t, js, bus.RejectionsStream), readModel: readModel(), dump: dump()}
		for _, n := range protected {
			s.streams[n] = snapshotStream(t, js, n)
		}
		return s
	}
	attackers := []string{mallory, nobody}
	legitRejections := 0
	// check compares the system with before after a batch: the protected
	// streams and the read model byte for byte, the rejections stream
	// unchanged but for new rejections of the attackers' own proposals
	// (what a forged but well-formed proposal legitimately causes), and
	// every process alive. It returns the new state.
	check := func(batch string, before state) state {
		t.Helper()
		waitIdle()
		time.Sleep(200 * time.Millisecond) // acks and anything else in flight
		waitIdle()
		after := take()
		for _, n := range protected {
			b, a := before.streams[n], after.streams[n]
			if a.first != b.first || a.last != b.last || len(a.msgs) != len(b.msgs) {
				t.Errorf("%s: stream %s changed: seq %d..%d (%d msgs) -> %d..%d (%d msgs)", batch, n, b.first, b.last, len(b.msgs), a.first, a.last, len(a.msgs))
			}
			for seq, h := range b.msgs {
				if a.msgs[seq] != h {
					t.Errorf("%s: stream %s message %d changed", batch, n, seq)
				}
			}
			for seq := range a.msgs {
				if _, ok := b.msgs[seq]; !ok && n == bus.EventsStream {
					if m, err := getMsg(t, js, seq); err == nil {
						t.Errorf("%s: new event %d on %s: %s", batch, seq, m.Subject, m.Data)
					}
				}
			}
		}
		rs, _ := js.Stream(ctx, bus.RejectionsStream)
		for seq, h := range before.rejections.msgs {
			if after.rejections.msgs[seq] != h {
				t.Errorf("%s: rejection %d changed or removed", batch, seq)
			}
		}
		for seq := range after.rejections.msgs {
			if _, ok := before.rejections.msgs[seq]; ok {
				continue
			}
			m, err := rs.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			var r rejection
			if err := json.Unmarshal(m.Data, &r); err != nil || !slices.Contains(attackers, r.Actor) || r.Code == "" {
				t.Errorf("%s: rejection %d on %s is not a decider's rejection of an attacker's proposal: %s", batch, seq, m.Subject, m.Data)
			}
			legitRejections++
		}
		if after.readModel != before.readModel {
			t.Errorf("%s: the read model changed: %s -> %s", batch, before.readModel, after.readModel)
		}
		if after.dump != before.dump {
			t.Errorf("%s: the read model's answers changed:\nbefore:\n%s\nafter:\n%s", batch, before.dump, after.dump)
		}
		if err := sys.alive(); err != nil {
			t.Fatalf("%s: %v", batch, err)
		}
		return after
	}

	cur := take()
	t.Logf("before: events to seq %d, %s", cur.streams[bus.EventsStream].last, cur.readModel)
	attempts, httpAttempts, natsProposals := 0, 0, 0
	phase := time.Now()

	// The NATS attack material: every subject of every stream, KV bucket
	// and object store, $JS.API, other users' proposals, lb.decided,
	// lb.read, lb.admin; and every JetStream header.
	replies, err := forgery.Replies(ctx, js, "lb", []string{"owner", "admin", "_system", "team-admin"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{bus.EventsStream, bus.RejectionsStream, "KV_logbook_wandb", "OBJ_logbook_wandb_files"} {
		if !slices.ContainsFunc(replies, func(r string) bool {
			return strings.HasPrefix(r, map[string]string{bus.EventsStream: "lb.ev.owner.shared.", bus.RejectionsStream: "lb.rej.",
				"KV_logbook_wandb": "$KV.logbook_wandb.upload_signing_key", "OBJ_logbook_wandb_files": "$O.logbook_wandb_files.M."}[n])
		}) {
			t.Fatalf("the reply catalogue misses the subjects of %s: %v", n, replies)
		}
	}
	headers := forgery.Headers("lb.ev.owner.shared.run_deleted")
	var violations atomic.Int64 // counted on the connections' callback goroutines
	connect := func(user, key string) *nats.Conn {
		c, err := nats.Connect(sys.NATSURL, nats.Token(key), nats.CustomInboxPrefix(bus.InboxPrefix(user)),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) { violations.Add(1) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}

	// Batch 1: the reproduction as reported, by a user in no project,
	// and the same with the reply on every subject of the catalogue.
	nb := connect(nobody, nobodyKey)
	send := func(c *nats.Conn, subject, reply string, h nats.Header, data []byte) {
		t.Helper()
		if err := c.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Header: h, Data: data}); err != nil {
			t.Fatal(err)
		}
		attempts++
	}
	send(nb, "lb.in.nobody.x.y.z", "lb.ev.t1.p1.run_started", nil, []byte("junk"))
	for _, r := range replies {
		send(nb, "lb.in.nobody.x.y.z", r, nil, []byte("junk"))
	}
	if err := nb.Flush(); err != nil {
		t.Fatal(err)
	}
	cur = check("reproduction (a user in no project, reply on every subject)", cur)
	t.Logf("batch 1 (reproduction) done after %s: %d attempts", time.Since(phase), attempts)

	// Batch 2: HTTP, forged actor fields and headers.
	forged := []map[string]any{{"actor": "owner"}, {"Actor": "owner"}, {"user": "owner"}, {"username": "owner"},
		{"owner": "owner"}, {"actor": "admin", "site_admin": true}, {"created_by": "owner"}, {"entity": "owner"}}
	httpHeaders := []map[string]string{{"X-Logbook-Actor": "owner", "X-Actor": "owner"}, {"X-Forwarded-User": "owner", "X-User": "owner"},
		{"X-Remote-User": "admin", "From": "owner@example.com"}, {}}
	type target struct{ method, path string }
	targets := []target{
		{"POST", "/api/v1/projects/owner/private/runs"},
		{"POST", "/api/v1/projects/acme/proj/runs"},
		{"PATCH", "/api/v1/projects/owner/shared/runs/" + run2.RunID},
		{"POST", "/api/v1/projects/owner/shared/runs/" + run2.RunID + "/log"},
		{"POST", "/api/v1/projects/owner/shared/runs/" + run2.RunID + "/finish"},
		{"POST", "/api/v1/projects/owner/shared/runs/" + run2.RunID + "/summary"},
		{"DELETE", "/api/v1/projects/owner/shared/runs/" + run2.RunID},
		{"POST", "/api/v1/projects/acme/proj/runs/" + w.runID + "/log"},
		{"DELETE", "/api/v1/projects/acme/proj"},
		{"DELETE", "/api/v1/projects/owner/shared"},
		{"POST", "/api/v1/projects/acme/proj/members"},
		{"PATCH", "/api/v1/projects/owner/shared/members/none"},
		{"DELETE", "/api/v1/projects/owner/shared/members/owner"},
		{"DELETE", "/api/v1/projects/acme/proj/invites/pending@example.com"},
		{"POST", "/api/v1/users/owner/keys"},
		{"DELETE", "/api/v1/users/sa-target/keys/x"},
		{"POST", "/api/v1/users"},
		{"POST", "/api/v1/teams"},
		{"POST", "/api/v1/teams/acme/members"},
		{"POST", "/api/v1/teams/acme/service-accounts"},
		{"POST", "/api/v1/projects"},
	}
	bodyFor := func(tg target, f map[string]any) map[string]any {
		b := map[string]any{}
		for k, v := range f {
			b[k] = v
		}
		switch {
		case strings.HasSuffix(tg.path, "/log"):
			b["rows"] = []map[string]any{{"step": 100, "values": map[string]float64{"loss": 9}}}
		case strings.HasSuffix(tg.path, "/summary"):
			b["values"] = map[string]float64{"loss": 9}
		case strings.HasSuffix(tg.path, "/members") && tg.method == "POST":
			b["username"], b["role"] = "none", "admin"
		case strings.HasSuffix(tg.path, "/members/none"):
			b["role"] = "admin"
		case tg.path == "/api/v1/users":
			b["username"], b["site_admin"] = "evil", true
		case tg.path == "/api/v1/teams":
			b["name"] = "evilteam"
		case strings.HasSuffix(tg.path, "/service-accounts"):
			b["username"] = "evilbot"
		case strings.HasSuffix(tg.path, "/teams/acme/members"):
			b["username"], b["role"] = "none", "admin"
		case tg.path == "/api/v1/projects":
			b["entity"], b["name"] = "acme", "evil"
		case strings.HasSuffix(tg.path, "/runs"):
			b["name"], b["id"] = "evil", "evilrun"
		case tg.method == "PATCH":
			b["name"], b["add_tags"] = "pwned", []string{"pwned"}
		}
		return b
	}
	for _, tg := range targets {
		for _, f := range forged {
			for _, h := range httpHeaders {
				body, _ := json.Marshal(bodyFor(tg, f))
				req, _ := http.NewRequest(tg.method, sys.WriteURL+tg.path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+w.keys[mallory])
				for k, v := range h {
					if v != "" {
						req.Header.Set(k, v)
					}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode < 400 {
					t.Errorf("%s %s by mallory with %v %v: %d", tg.method, tg.path, f, h, resp.StatusCode)
				}
				attempts++
				httpAttempts++
			}
		}
	}
	// Someone else's key with a wrong value, Basic auth naming the owner.
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", sys.WriteURL+"/api/v1/projects/owner/private/runs", strings.NewReader(`{"name":"x"}`))
		req.SetBasicAuth("owner", w.keys[mallory][:len(w.keys[mallory])-i-1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("truncated key: %d", resp.StatusCode)
		}
		attempts++
		httpAttempts++
	}
	cur = check("HTTP", cur)
	t.Logf("batch 2 (HTTP) done after %s: %d attempts", time.Since(phase), httpAttempts)

	// Batch 3: through NATS with mallory's key, every forged message with
	// the reply subject set to every subject of the catalogue, the
	// JetStream headers taking turns.
	mc := connect(mallory, w.keys[mallory])
	subj := events.Subjects{Prefix: "lb"}
	name := "pwned"
	payloads := []events.Event{
		{Entity: "owner", Project: "private", Payload: events.RunStartedV1{Name: "x"}},
		{Entity: "owner", Project: "shared", Run: run2.RunID, Payload: events.MustRows([]events.Row{{Step: 50, Values: map[string]events.Value{"loss": 1}}})},
		{Entity: "owner", Project: "shared", Run: run2.RunID, Payload: events.RunFinishedV1{}},
		{Entity: "owner", Project: "shared", Run: run2.RunID, Payload: events.RunUpdatedV1{Name: &name}},
		{Entity: "owner", Project: "shared", Run: run2.RunID, Payload: events.RunDeletedV1{}},
		{Entity: "owner", Project: "shared", Run: run2.RunID, Payload: events.RunCrashedV1{}},
		{Entity: "owner", Project: "shared", Payload: events.RoleChangedV1{Username: "none", Role: events.RoleAdmin}},
		{Entity: "owner", Project: "shared", Payload: events.MemberJoinedV1{Username: "none", Role: events.RoleAdmin}},
		{Entity: "acme", Project: "proj", Payload: events.ProjectDeletedV1{}},
		{Entity: "acme", Project: "proj", Payload: events.MemberInvitedV1{Username: "none", Role: events.RoleAdmin}},
		{Entity: "owner", Payload: events.KeyCreatedV1{Username: "owner", KeyID: "evil", Hash: strings.Repeat("e", 64)}},
		{Entity: "none", Payload: events.UserCreatedV1{Username: "none", SiteAdmin: true}},
		{Entity: "acme", Payload: events.TeamMemberJoinedV1{Username: "none", Role: events.TeamAdmin}},
		{Entity: "evil2", Payload: events.UserCreatedV1{Username: "evil2", Service: true, Owner: "acme"}},
	}
	type forgedMsg struct {
		subject string
		data    []byte
	}
	var msgs []forgedMsg
	for j, p := range payloads {
		p.ID = events.NewID(time.Now())
		p.Type = p.Payload.EventType()
		p.Actor = []string{"owner", "admin", "_system", ""}[j%4] // ignored: the subject names the actor
		p.Time = time.Now()
		data, err := events.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, forgedMsg{subj.Proposal(mallory, p), data})
	}
	// A body naming a project other than its subject's.
	mismatch, _ := events.Encode(events.Event{ID: events.NewID(time.Now()), Type: events.RunStarted, Entity: "owner", Project: "private", Payload: events.RunStartedV1{Name: "x"}})
	msgs = append(msgs, forgedMsg{fmt.Sprintf("lb.in.%s.%s.%s.run_started", mallory, mallory, "own"), mismatch})
	// Replays of the owner's accepted proposals (their ids) as mallory.
	var trail []struct {
		Seq uint64 `json:"seq"`
	}
	ow.must(200, "GET", "/api/v1/projects/owner/shared/audit", nil, &trail)
	for _, a := range trail {
		msg, err := getMsg(t, js, a.Seq)
		if err != nil {
			continue
		}
		e, err := events.Decode(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		p := events.Event{ID: e.Cause, Type: e.Type, Entity: e.Entity, Project: e.Project, Run: e.Run, Payload: e.Payload, Actor: e.Actor, Time: e.Time}
		data, err := events.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, forgedMsg{subj.Proposal(mallory, p), data})
	}
	proposalKinds := len(msgs)
	// Subjects mallory may not publish to: the server refuses them.
	evData, _ := events.Encode(events.Event{ID: events.NewID(time.Now()), Type: events.RunDeleted, Entity: "owner", Project: "shared",
		Run: run2.RunID, Actor: "owner", Time: time.Now(), Payload: events.RunDeletedV1{}})
	for _, s := range []string{"lb.ev.owner.shared.run_deleted", "lb.ev.owner._.key_created", "lb.rej.owner.shared",
		"lb.in.owner.owner.shared.run_started", "lb.in._system.owner.shared.run_crashed",
		"$JS.API.STREAM.DELETE.LB_EVENTS", "$JS.API.STREAM.PURGE.LB_EVENTS", "$JS.API.STREAM.MSG.DELETE.LB_EVENTS",
		"$JS.API.CONSUMER.CREATE.LB_EVENTS", "$JS.API.STREAM.UPDATE.LB_EVENTS", "$JS.API.STREAM.CREATE.EVIL",
		"$KV.logbook_wandb.upload_signing_key", "lb.read", "lb.decided.x", "lb.admin.readmodel.rebuild", "$SYS.REQ.USER.AUTH", "_INBOX.x"} {
		msgs = append(msgs, forgedMsg{s, evData})
	}
	i := 0
	for _, m := range msgs {
		for _, r := range replies {
			send(mc, m.subject, r, headers[i%len(headers)].H, m.data)
			i++
			if strings.HasPrefix(m.subject, "lb.in."+mallory+".") {
				natsProposals++
			}
		}
		if err := mc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	cur = check("NATS forged messages x reply subjects", cur)
	t.Logf("batch 3 (NATS x %d reply subjects) done after %s: %d attempts so far", len(replies), time.Since(phase), attempts)

	// Batch 4: every forged proposal with every JetStream header set, the
	// replies taking turns.
	for hi, h := range headers {
		for k, m := range msgs[:proposalKinds] {
			send(mc, m.subject, replies[(hi*proposalKinds+k)%len(replies)], h.H, m.data)
			natsProposals++
		}
	}
	if err := mc.Flush(); err != nil {
		t.Fatal(err)
	}
	cur = check("NATS forged proposals x JetStream headers", cur)
	t.Logf("batch 4 (NATS x %d header sets) done after %s", len(headers), time.Since(phase))

	// Batch 5: subscriptions and the JetStream API through mallory's
	// connection: refused.
	for _, s := range []string{"lb.>", "_INBOX.>", ">", "lb.ev.>", "lb.decided.>", "$JS.API.>", "_INBOX_owner.>", "$KV.>"} {
		_, _ = mc.SubscribeSync(s)
		attempts++
	}
	_ = mc.Flush()
	mjs, _ := jetstream.New(mc)
	// (The server drops the request: no answer comes, so wait briefly.)
	for i := 0; i < 10; i++ {
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		if err := mjs.DeleteStream(sctx, bus.EventsStream); err == nil {
			t.Error("mallory deleted the events stream")
		}
		if _, err := mjs.Publish(sctx, "lb.ev.owner.shared.run_deleted", evData); err == nil {
			t.Error("mallory appended to the events stream")
		}
		cancel()
		attempts += 2
	}
	cur = check("subscriptions and JetStream API", cur)

	// The W&B path still works: a fresh upload URL signed with the same key.
	if st := upload(uploadURL(), "lr: 0.2"); st != 200 {
		t.Errorf("W&B upload after the attacks: %d", st)
	}
	// And a client's own proposal over NATS still gets its JetStream ack.
	ack, err := mjs.Publish(ctx, fmt.Sprintf("lb.in.%s.%s._.key_created", mallory, mallory), []byte("{}"))
	if err != nil || ack.Stream != bus.InboxStream {
		t.Errorf("mallory's own proposal over JetStream: %+v %v", ack, err)
	}
	waitIdle()

	if violations.Load() == 0 {
		t.Error("the server reported no permission violations")
	}
	if attempts < 2000 {
		t.Errorf("only %d forgery attempts", attempts)
	}
	t.Logf("forgery: %d attempts (%d HTTP, %d NATS of which %d were proposals on the attacker's own subject: decided and refused, %d rejections recorded); %d reply subjects, %d JetStream header sets; %d permission violations reported by nats-server; events stream at seq %d before and after, %s",
		attempts, httpAttempts, attempts-httpAttempts, natsProposals, legitRejections, len(replies), len(headers), violations.Load(), cur.streams[bus.EventsStream].last, cur.readModel)
}
