package wandb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
)

// js connects to the embedded server with Logbook's own credentials.
func (lb *logbook) js() jetstream.JetStream {
	lb.t.Helper()
	nc, err := nats.Connect(lb.nats, nats.UserInfo(lb.natsAuth.User, lb.natsAuth.Password))
	if err != nil {
		lb.t.Fatal(err)
	}
	lb.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		lb.t.Fatal(err)
	}
	return js
}

// lastSeq is the events stream's last sequence.
func lastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// raw sends a request and returns the status, the headers and the body,
// without judging the status.
func (lb *logbook) raw(method, path, auth, body string) (int, http.Header, []byte) {
	lb.t.Helper()
	req, err := http.NewRequest(method, lb.base+path, strings.NewReader(body))
	if err != nil {
		lb.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, []byte(b.String())
}

// TestWandbRateLimitedPerKey: the W&B endpoints (GraphQL and file_stream)
// take from the same per-key budget as the native API: beyond the burst a
// key gets 429 rate_limited with Retry-After, while another key is not
// affected.
func TestWandbRateLimitedPerKey(t *testing.T) {
	lb := mustLogbook(t, func(c *app.AllInOneConfig) { c.KeyRate, c.KeyBurst = 0.5, 30 })
	alice := lb.newUser("alice")
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
		"name": "r1", "project": "p", "entity": "alice"})).ok(t)
	fs := "/files/alice/p/r1/file_stream"
	counts := map[int]int{}
	var retryAfter string
	for i := 0; i < 40; i++ {
		st, h, body := lb.raw("POST", fs, basic(alice), `{"files":{}}`)
		counts[st]++
		if st == 429 {
			retryAfter = h.Get("Retry-After")
			if !strings.Contains(string(body), "rate_limited") {
				t.Fatalf("429 body = %s", body)
			}
		}
	}
	if counts[429] == 0 || counts[200] == 0 || counts[200]+counts[429] != 40 {
		t.Fatalf("file_stream statuses = %v, want some 200 then 429", counts)
	}
	if retryAfter == "" {
		t.Error("429 without Retry-After")
	}
	// GraphQL (UpsertBucket) shares the exhausted budget, and so does the
	// native API.
	vars, _ := json.Marshal(map[string]any{"query": upsertQuery, "operationName": "UpsertBucket",
		"variables": upsertVars(map[string]any{"name": "r1", "project": "p", "entity": "alice"})})
	if st, _, body := lb.raw("POST", "/graphql", basic(alice), string(vars)); st != 429 {
		t.Fatalf("UpsertBucket after the budget: %d %s, want 429", st, body)
	}
	if st, _, body := lb.raw("POST", "/api/v1/projects/alice/p/runs/r1/heartbeat", "Bearer "+alice, ""); st != 429 {
		t.Fatalf("native write after the W&B budget: %d %s, want 429", st, body)
	}
	// Another key has its own budget.
	if st, _, body := lb.raw("POST", "/graphql", basic(adminKey), `{"query":"query Viewer { viewer { id } }","operationName":"Viewer"}`); st != 200 {
		t.Fatalf("another key: %d %s", st, body)
	}
}

// TestSampledWithoutKey: GET .../sampled without an API key answers 401
// (it once panicked on a nil user).
func TestSampledWithoutKey(t *testing.T) {
	lb := mustLogbook(t)
	for _, p := range []string{"sampled", "history", "export"} {
		st, _, body := lb.raw("GET", "/api/v1/projects/admin/p/runs/r/"+p, "", "")
		if st != 401 || !strings.Contains(string(body), "unauthenticated") {
			t.Errorf("GET %s without a key: %d %s, want 401 unauthenticated", p, st, body)
		}
	}
}

// TestWandbNoOpsAndBounds: identical UpsertBuckets and PATCHes append
// nothing to the log; file_stream refuses line offsets past the lines
// written and history keys that are not valid Unicode.
func TestWandbNoOpsAndBounds(t *testing.T) {
	lb := mustLogbook(t)
	js := lb.js()
	alice := lb.newUser("alice")
	vars := upsertVars(map[string]any{"name": "r1", "project": "p", "entity": "alice", "config": pyConfig,
		"jobType": "train", "tags": []string{"a", "b"}, "groupName": "g", "notes": "n", "displayName": "run-one"})
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, vars).ok(t)
	lb.eventually(alice, "/api/v1/projects/alice/p/runs/r1", func(r runDoc) bool { return r.ID == "r1" })
	before := lastSeq(t, js)
	for i := 0; i < 20; i++ {
		lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, vars).ok(t)
		lb.native(200, "PATCH", "/api/v1/projects/alice/p/runs/r1", alice, map[string]any{"name": "run-one", "group": "g", "job_type": "train"}, nil)
	}
	if after := lastSeq(t, js); after != before {
		t.Fatalf("20 identical UpsertBuckets and PATCHes appended %d events", after-before)
	}
	// A real change is still recorded.
	lb.native(200, "PATCH", "/api/v1/projects/alice/p/runs/r1", alice, map[string]any{"notes": "changed"}, nil)
	if after := lastSeq(t, js); after != before+1 {
		t.Fatalf("a real change appended %d events, want 1", after-before)
	}

	fs := "/files/alice/p/r1/file_stream"
	if st, m := lb.fileStream(alice, fs, `{"files":{"output.log":{"offset":0,"content":["a","b"]}}}`); st != 200 {
		t.Fatalf("output lines: %d %v", st, m)
	}
	st, m := lb.fileStream(alice, fs, `{"files":{"output.log":{"offset":1000000000,"content":["x","y"]}}}`)
	if st != 400 || !strings.Contains(fmt.Sprint(m), "past the 2 lines") {
		t.Fatalf("offset 1e9: %d %v, want 400 naming the line count", st, m)
	}
	st, m = lb.fileStream(alice, fs, `{"files":{"wandb-history.jsonl":{"offset":0,"content":["{\"_step\":0,\"bad\\udc80\":1}"]}}}`)
	if st != 400 || !strings.Contains(fmt.Sprint(m), "invalid_utf8") {
		t.Fatalf("lone surrogate in a history key: %d %v, want 400 invalid_utf8", st, m)
	}
	st, m = lb.fileStream(alice, fs, "{\"files\":{\"wandb-history.jsonl\":{\"offset\":0,\"content\":[\"{\\\"_step\\\":0,\\\"bad\xff\\\":1}\"]}}}")
	if st != 400 || !strings.Contains(fmt.Sprint(m), "invalid_utf8") {
		t.Fatalf("invalid UTF-8 in a history key: %d %v, want 400 invalid_utf8", st, m)
	}
	r := lb.eventually(alice, "/api/v1/projects/alice/p/runs/r1", func(r runDoc) bool { return r.Notes == "changed" })
	if r.Rows != 0 {
		t.Fatalf("refused history stored: %+v", r)
	}
	var rs gqlAnswer = lb.gql("/graphql", alice, "RunResumeStatus", resumeQuery, map[string]any{"project": "p", "entity": "alice", "name": "r1"}).ok(t)
	if got := get(rs.Data, "model", "bucket", "logLineCount"); got != 2.0 {
		t.Fatalf("logLineCount = %v, want 2", got)
	}
}

// put uploads body to an upload URL and returns the status and answer.
func put(t *testing.T, u, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", u, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestUploadURLsDieWithTheirKeyAndQuota: an upload URL stops working once
// the key that asked for it is revoked (the key is part of the signed
// URL); a project's run files are bounded by its quota, a replaced file
// counting once, with a clear error.
func TestUploadURLsDieWithTheirKeyAndQuota(t *testing.T) {
	lb := mustLogbook(t, func(c *app.AllInOneConfig) { c.UploadQuota = 1000 })
	alice := lb.newUser("alice")
	var k2 struct {
		Key   string `json:"key"`
		KeyID string `json:"key_id"`
	}
	lb.native(201, "POST", "/api/v1/users/alice/keys", alice, map[string]string{"name": "second"}, &k2)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "r1", "project": "p", "entity": "alice"})).ok(t)
	urls := func(key string, files ...string) []string {
		t.Helper()
		cf := lb.gql("/graphql", key, "CreateRunFiles", createFilesQuery, map[string]any{
			"entity": "alice", "project": "p", "run": "r1", "files": files}).ok(t)
		var out []string
		for _, e := range get(cf.Data, "createRunFiles", "files").([]any) {
			out = append(out, get(e, "uploadUrl").(string))
		}
		return out
	}
	byK2 := urls(k2.Key, "a.txt", "b.txt")
	if st, body := put(t, byK2[0], "first"); st != 200 {
		t.Fatalf("PUT with the key active: %d %s", st, body)
	}
	lb.native(200, "DELETE", "/api/v1/users/alice/keys/"+k2.KeyID, alice, nil, nil)
	for _, u := range byK2 {
		if st, body := put(t, u, "after revocation"); st != 403 || !strings.Contains(body, "key_revoked") {
			t.Fatalf("PUT after the key was revoked: %d %s, want 403 key_revoked", st, body)
		}
	}
	// The URL names its key: pointing it at another (active) key breaks
	// the signature.
	u := strings.Replace(byK2[1], "&k=", "&k=x", 1)
	if st, body := put(t, u, "forged"); st != 403 || !strings.Contains(body, "signature") {
		t.Fatalf("PUT with another key id: %d %s", st, body)
	}

	// Quota: 1,000 bytes for the project; "first" (5 bytes) is stored.
	up := urls(alice, "c.bin", "d.bin", "c2.bin")
	if st, body := put(t, up[0], strings.Repeat("c", 600)); st != 200 {
		t.Fatalf("600 bytes: %d %s", st, body)
	}
	if st, body := put(t, up[1], strings.Repeat("d", 600)); st != 413 || !strings.Contains(body, "upload_quota_exceeded") || !strings.Contains(body, "1000") {
		t.Fatalf("600 more bytes over the quota: %d %s, want 413 upload_quota_exceeded naming the quota", st, body)
	}
	// Replacing c.bin counts its new size only.
	if st, body := put(t, up[0], strings.Repeat("C", 900)); st != 200 {
		t.Fatalf("replacing with 900 bytes: %d %s", st, body)
	}
	if st, body := put(t, up[2], strings.Repeat("e", 200)); st != 413 {
		t.Fatalf("200 bytes with 905 used: %d %s, want 413", st, body)
	}
	if st, body := put(t, up[2], strings.Repeat("e", 90)); st != 200 {
		t.Fatalf("90 bytes with 905 used: %d %s, want 200", st, body)
	}
}
