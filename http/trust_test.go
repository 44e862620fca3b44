package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// rawCall sends body as it is (bytes JSON encoding would repair) and
// returns the status and the answer.
func (w *writeSide) rawCall(key, method, path, body string) (int, string) {
	w.t.Helper()
	req, _ := http.NewRequest(method, w.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *writeSide) refused(want int, code, key, method, path, body string) string {
	w.t.Helper()
	st, out := w.rawCall(key, method, path, body)
	if st != want || !strings.Contains(out, `"code":"`+code+`"`) {
		w.t.Fatalf("%s %s %q: %d %s, want %d %s", method, path, body, st, out, want, code)
	}
	return out
}

// TestTextAndStepBounds: steps are bounded to 2^53 with a clear error;
// text that is not valid Unicode (invalid UTF-8, lone surrogates) in metric
// keys and run names is refused, not stored as U+FFFD, over HTTP and over
// NATS; a group or job type with NUL or other control characters is
// refused.
func TestTextAndStepBounds(t *testing.T) {
	w := mustWriteSide(t, time.Hour)
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	const runs = "/api/v1/projects/bob/p/runs"
	w.must(201, bob, "POST", runs, map[string]any{"id": "r1", "group": "sweep-1"}, nil)
	waitStep := func(step int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); w.run("bob", "p", "r1").LastStep != step; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("last step %d, want %d", w.run("bob", "p", "r1").LastStep, step)
			}
		}
	}

	// Steps.
	w.must(202, bob, "POST", runs+"/r1/log", map[string]any{"rows": []map[string]any{{"step": 1 << 40, "values": map[string]float64{"loss": 1}}}}, nil)
	waitStep(1 << 40)
	out := w.refused(400, "invalid", bob, "POST", runs+"/r1/log", `{"rows":[{"step":9223372036854775807,"values":{"loss":1}}]}`)
	if !strings.Contains(out, "2^53") {
		t.Errorf("the refusal does not name the bound: %s", out)
	}
	w.refused(400, "invalid", bob, "POST", runs+"/r1/log", `{"rows":[{"step":9007199254740993,"values":{"loss":1}}]}`)
	w.must(202, bob, "POST", runs+"/r1/log", map[string]any{"rows": []map[string]any{{"step": int64(1) << 53, "values": map[string]float64{"loss": 1}}}}, nil)
	waitStep(1 << 53)

	// Text that is not Unicode, on the fast path and the slow path of the
	// log body, in run starts and updates.
	for _, body := range []string{
		"{\"rows\":[{\"step\":1,\"values\":{\"bad\xff\":1}}]}",
		`{"rows":[{"step":1,"values":{"bad\udc80":1}}]}`,
		"{\"rows\":[{\"step\":1,\"time\":1,\"values\":{\"ok\":1,\"bad\xc3\":2}}], \"extra\": true}",
	} {
		w.refused(400, "invalid_utf8", bob, "POST", runs+"/r1/log", body)
	}
	w.refused(400, "invalid_utf8", bob, "POST", runs, "{\"id\":\"r2\",\"name\":\"run-\xfe\"}")
	w.refused(400, "invalid_utf8", bob, "POST", runs, `{"id":"r2","name":"run-\ud800"}`)
	w.refused(400, "invalid_utf8", bob, "PATCH", runs+"/r1", "{\"name\":\"x\xff\"}")
	w.refused(400, "invalid_utf8", bob, "POST", runs+"/r1/summary", `{"values":{"acc\udfff":1}}`)
	out = w.refused(400, "invalid", bob, "POST", runs, `{"id":"r3","group":"a\u0000b"}`)
	if !strings.Contains(out, "control") {
		t.Errorf("NUL in group: %s", out)
	}
	w.refused(400, "invalid", bob, "PATCH", runs+"/r1", `{"group":"a\u0000b"}`)
	w.refused(400, "invalid", bob, "PATCH", runs+"/r1", `{"job_type":"train\n"}`)
	if r := w.run("bob", "p", "r2"); r.ID != "" {
		t.Fatalf("run r2 was created: %+v", r)
	}

	// Over NATS (a client publishing its own proposal): a metric key with
	// an invalid byte is refused and recorded as a rejection.
	nc, js, err := bus.Connect(w.nats, "nats-client")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := events.Event{ID: events.NewID(time.Now()), Actor: "bob", Time: time.Now().UTC(), Entity: "bob", Project: "p", Run: "r1",
		Type: events.MetricsLogged, Version: events.CurrentVersion(events.MetricsLogged),
		Payload: events.MustRows([]events.Row{{Step: 1<<53 - 1, Time: 1, Values: map[string]events.Value{"KEYX": 1}}})}
	data, err := events.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte("KEYX"), []byte("K\xffYX"), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subj := bus.DefaultConfig().Subjects
	if _, err := js.Publish(ctx, subj.Proposal("bob", p), data, jetstream.WithMsgID(p.ID)); err != nil {
		t.Fatal(err)
	}
	for {
		if found := rejectionWith(t, ctx, js, subj.Rejection("bob", "p"), "not valid UTF-8"); found {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no rejection of the NATS proposal with an invalid metric key")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The refused NATS proposal never reached the run: only the row at
	// 2^53 is there, so the last step is unchanged.
	if r := w.run("bob", "p", "r1"); r.LastStep != 1<<53 {
		t.Fatalf("last step %d", r.LastStep)
	}
}

// rejectionWith reports whether a rejection on subject mentions text.
func rejectionWith(t *testing.T, ctx context.Context, js jetstream.JetStream, subject, text string) bool {
	t.Helper()
	st, err := js.Stream(ctx, bus.RejectionsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return false
	}
	var r struct {
		Message string
		Code    policy.Code
	}
	_ = json.Unmarshal(m.Data, &r)
	return strings.Contains(r.Message, text)
}

// TestRevokeInviteAnyCase: an invite by email is revoked whatever the case
// of the address in the request.
func TestRevokeInviteAnyCase(t *testing.T) {
	w := mustWriteSide(t, time.Hour)
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	w.must(200, bob, "POST", "/api/v1/projects/bob/p/members", map[string]string{"email": "Carol.Smith@Example.COM", "role": "viewer"}, nil)
	w.must(200, bob, "DELETE", "/api/v1/projects/bob/p/invites/cAROL.sMITH@example.com", nil, nil)
	w.refused(404, "invite_not_found", bob, "DELETE", "/api/v1/projects/bob/p/invites/carol.smith@example.com", "")
	var pending int
	w.d.View(func(s *policy.State) { p, _ := s.Project("bob", "p"); pending = len(p.Pending) })
	if pending != 0 {
		t.Fatalf("%d pending invites after the revocation", pending)
	}
	// The invite is gone: Carol signing up does not join.
	w.must(201, w.admin, "POST", "/api/v1/users", map[string]string{"username": "carol", "email": "carol.smith@example.com"}, nil)
	var role events.Role
	w.d.View(func(s *policy.State) { p, _ := s.Project("bob", "p"); role = p.Members["carol"] })
	if role != "" {
		t.Fatalf("carol joined as %q after the invite was revoked", role)
	}
}

// TestRejectionKeepsBoundedProposal: a refused request with a config
// 5,000 levels deep is recorded as a bounded summary, and the audit trail
// stays small and shallow enough for any JSON parser.
func TestRejectionKeepsBoundedProposal(t *testing.T) {
	w := mustWriteSide(t, time.Hour)
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	deep := `{"id":"r1","config":{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`
	w.refused(400, "invalid", bob, "POST", "/api/v1/projects/bob/p/runs", deep)
	big := `{"id":"r2","notes":"` + strings.Repeat("n", 200<<10) + `"}`
	w.refused(400, "invalid", bob, "POST", "/api/v1/projects/bob/p/runs", big)

	nc, js, err := bus.Connect(w.nats, "reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.RejectionsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs < 2 {
		t.Fatalf("%d rejections recorded, want 2", info.State.Msgs)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data) > 32<<10 || depthOf(m.Data) > 8 {
			t.Fatalf("rejection %d is %d bytes, %d levels deep", seq, len(m.Data), depthOf(m.Data))
		}
		var r struct {
			Summary struct {
				Type   events.Type
				Bytes  int
				Depth  int
				SHA256 string
			} `json:"proposal_summary"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Summary.Type != events.RunStarted || r.Summary.SHA256 == "" ||
			r.Summary.Bytes < 10000 || (r.Summary.Depth < 5000 && r.Summary.Bytes < 200<<10) {
			t.Fatalf("rejection %d: %+v (%v): %s", seq, r, err, m.Data[:min(len(m.Data), 400)])
		}
	}
	// The audit page lists both refusals and stays shallow.
	st2, body := w.rawCall(bob, "GET", "/api/v1/projects/bob/p/audit", "")
	if st2 != 200 || len(body) > 64<<10 || depthOf([]byte(body)) > 8 {
		t.Fatalf("audit: %d, %d bytes, %d deep", st2, len(body), depthOf([]byte(body)))
	}
	var entries []struct {
		Accepted bool
		Type     events.Type
		Code     policy.Code
	}
	if err := json.Unmarshal([]byte(body), &entries); err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, e := range entries {
		if !e.Accepted && e.Type == events.RunStarted && e.Code == policy.CodeInvalid {
			refusals++
		}
	}
	if refusals != 2 {
		t.Fatalf("audit shows %d of the 2 refused run starts: %s", refusals, body[:min(len(body), 2000)])
	}
}

// depthOf is the deepest nesting of a JSON document.
func depthOf(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				deepest = max(deepest, depth)
			} else {
				depth--
			}
		}
	}
}

// TestAuditAboveProjectLevel: refusals about someone else's keys and about
// teams show in the audit trail of that user (to them and the site admin),
// of the team (to its admins) and of the site (to the site admin); nobody
// else reads them, and key hashes never show.
func TestAuditAboveProjectLevel(t *testing.T) {
	w := mustWriteSide(t, time.Hour)
	bob, mallory := w.user("bob"), w.user("mallory")
	w.must(201, w.admin, "POST", "/api/v1/teams", map[string]string{"name": "acme"}, nil)
	w.must(201, w.admin, "POST", "/api/v1/teams/acme/members", map[string]string{"username": "bob"}, nil)
	var keys []policy.KeyInfo
	w.must(200, bob, "GET", "/api/v1/users/bob/keys", nil, &keys)

	w.call(mallory, "POST", "/api/v1/users/bob/keys", map[string]string{"name": "stolen"}, nil)
	w.call(mallory, "DELETE", "/api/v1/users/bob/keys/"+keys[0].ID, nil, nil)
	w.call(mallory, "POST", "/api/v1/teams", map[string]string{"name": "evil"}, nil)
	w.call(mallory, "POST", "/api/v1/teams/acme/members", map[string]string{"username": "mallory", "role": "admin"}, nil)

	type entry struct {
		Actor    string
		Type     events.Type
		Accepted bool
		Code     policy.Code
	}
	read := func(key, path string) ([]entry, string) {
		t.Helper()
		st, body := w.rawCall(key, "GET", path, "")
		if st != 200 {
			t.Fatalf("GET %s: %d %s", path, st, body)
		}
		var out []entry
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out, body
	}
	has := func(list []entry, typ events.Type) bool {
		for _, e := range list {
			if e.Actor == "mallory" && e.Type == typ && !e.Accepted && e.Code != "" {
				return true
			}
		}
		return false
	}
	for _, key := range []string{bob, w.admin} {
		list, body := read(key, "/api/v1/users/bob/audit")
		if !has(list, events.KeyCreated) || !has(list, events.KeyRevoked) {
			t.Fatalf("bob's audit misses mallory's refused key operations: %s", body)
		}
		if strings.Contains(body, policy.HashKey(bob)) || strings.Contains(body, `"hash":"`+"0") {
			t.Fatalf("a key hash shows in the audit: %s", body)
		}
	}
	list, body := read(w.admin, "/api/v1/teams/acme/audit")
	if !has(list, events.TeamMemberJoined) {
		t.Fatalf("the team's audit misses the refused join: %s", body)
	}
	list, body = read(w.admin, "/api/v1/audit")
	if !has(list, events.TeamCreated) || !has(list, events.KeyCreated) {
		t.Fatalf("the site audit misses the refused team creation: %s", body)
	}
	if strings.Contains(body, policy.HashKey(bob)) {
		t.Fatal("a key hash shows in the site audit")
	}
	// Nobody else reads them.
	w.refused(404, "not_found", mallory, "GET", "/api/v1/users/bob/audit", "")
	w.refused(404, "not_found", bob, "GET", "/api/v1/teams/acme/audit", "")
	w.refused(404, "not_found", bob, "GET", "/api/v1/audit", "")
}
