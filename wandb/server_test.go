package wandb_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/wandb"
)

const adminKey = "lb-test0000000000000000000000000000000000000000admin"

// logbook is an all-in-one Logbook with the W&B adapter, started in this
// process on random ports.
type logbook struct {
	t    *testing.T
	base string // http://host:port
	nats string
	// natsAuth are the credentials of Logbook's own components.
	natsAuth *bus.EmbeddedAuth
}

func mustLogbook(t *testing.T, tweaks ...func(*app.AllInOneConfig)) *logbook {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	cfg := app.AllInOneConfig{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", AdminKey: adminKey}
	for _, tw := range tweaks {
		tw(&cfg)
	}
	go func() {
		done <- app.AllInOne(ctx, cfg, io.Discard, func(a app.Addrs) { ready <- a })
	}()
	var a app.Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("logbook did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("logbook did not start within 60s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("logbook stopped with: %v", err)
		}
	})
	return &logbook{t: t, base: a.HTTP, nats: a.NATS, natsAuth: a.NATSAuth}
}

// call sends a request and returns the status and the body.
func (lb *logbook) call(method, path, auth string, body any) (int, []byte) {
	lb.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			lb.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, lb.base+path, rd)
	if err != nil {
		lb.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		lb.t.Errorf("%s %s answered %d (never 5xx): %s", method, path, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 404 && resp.StatusCode != 405 && ct != "application/json" {
		lb.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data
}

// native calls Logbook's own API with a bearer key; want is the status.
func (lb *logbook) native(want int, method, path, key string, body, out any) {
	lb.t.Helper()
	st, data := lb.call(method, path, "Bearer "+key, body)
	if st != want {
		lb.t.Fatalf("%s %s: %d, want %d: %s", method, path, st, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			lb.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func (lb *logbook) newUser(name string) string {
	lb.t.Helper()
	lb.native(201, "POST", "/api/v1/users", adminKey, map[string]string{"username": name, "email": name + "@example.com"}, nil)
	var k struct{ Key string }
	lb.native(201, "POST", "/api/v1/users/"+name+"/keys", adminKey, map[string]string{"name": "wandb"}, &k)
	return k.Key
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("api:"+key))
}

type gqlAnswer struct {
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

// gql sends a GraphQL operation the way wandb-core does (every variable
// present) to path (/graphql, or //graphql for a base URL with a trailing
// slash).
func (lb *logbook) gql(path, key, op, query string, vars any) gqlAnswer {
	lb.t.Helper()
	st, data := lb.call("POST", path, basic(key), map[string]any{"query": query, "variables": vars, "operationName": op})
	if st != 200 {
		lb.t.Fatalf("%s: HTTP %d: %s", op, st, data)
	}
	var a gqlAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		lb.t.Fatalf("%s: %v: %s", op, err, data)
	}
	return a
}

func (a gqlAnswer) ok(t *testing.T) gqlAnswer {
	t.Helper()
	if len(a.Errors) > 0 || a.Data == nil {
		t.Fatalf("GraphQL errors: %+v", a.Errors)
	}
	return a
}

func (a gqlAnswer) failed(t *testing.T, want string) {
	t.Helper()
	if len(a.Errors) == 0 || a.Data != nil {
		t.Fatalf("want a GraphQL error with data null, got data %v", a.Data)
	}
	if !strings.Contains(a.Errors[0].Message, want) {
		t.Fatalf("error %q does not say %q", a.Errors[0].Message, want)
	}
}

// get walks a decoded JSON document.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

const upsertQuery = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) { upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics}) { bucket { id name displayName description config sweepName historyLineCount project { id name entity { id name } } } inserted } }`

const resumeQuery = `query RunResumeStatus($project: String, $entity: String, $name: String!) { model(name: $project, entityName: $entity) { id name entity { id name } bucket(name: $name, missingOk: true) { id name summaryMetrics displayName logLineCount historyLineCount eventsLineCount historyTail eventsTail config tags notes wandbConfig(keys: ["t"]) } } }`

const createFilesQuery = `mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }`

// upsertVars are the variables wandb-core sends: all of them, nulls included.
func upsertVars(over map[string]any) map[string]any {
	v := map[string]any{}
	for _, n := range []string{"id", "name", "project", "entity", "groupName", "description", "displayName", "notes", "commit",
		"config", "host", "debug", "program", "repo", "jobType", "state", "sweep", "tags", "summaryMetrics"} {
		v[n] = nil
	}
	for k, x := range over {
		v[k] = x
	}
	return v
}

const pyConfig = `{"lr":{"value":0.01},"layers":{"value":[64,32]},"opt":{"value":{"name":"adam"}},"_wandb":{"value":{"python_version":"3.11.7","t":{"4":"3.11.7","5":"0.28.3.dev1"},"m":[],"cli_version":"0.28.3.dev1"}}}`

// runDoc is a run as Logbook's query API shows it.
type runDoc struct {
	ID       string                  `json:"id"`
	Name     string                  `json:"name"`
	State    string                  `json:"state"`
	JobType  string                  `json:"job_type"`
	Group    string                  `json:"group"`
	Notes    string                  `json:"notes"`
	Tags     []string                `json:"tags"`
	Config   map[string]any          `json:"config"`
	ExitCode *int                    `json:"exit_code"`
	Rows     int64                   `json:"history_rows"`
	Summary  map[string]events.Value `json:"summary"`
	Wandb    map[string]any          `json:"wandb"`
}

type row struct {
	Step   int64                   `json:"step"`
	Time   float64                 `json:"time"`
	Values map[string]events.Value `json:"values"`
}

// eventually polls the query API until cond holds for the run (the read
// model follows the log moments after a write).
func (lb *logbook) eventually(key, path string, cond func(runDoc) bool) runDoc {
	lb.t.Helper()
	var r runDoc
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		lb.native(200, "GET", path, key, nil, &r)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			lb.t.Fatalf("%s never reached the expected state: %+v", path, r)
		}
	}
}

func (lb *logbook) fileStream(key, path string, body any) (int, map[string]any) {
	lb.t.Helper()
	st, data := lb.call("POST", path, basic(key), body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return st, m
}

// TestPythonClientSequence sends the Python client's (wandb-core's) request
// sequence of protocol section 4 and checks what Logbook stored.
func TestPythonClientSequence(t *testing.T) {
	lb := mustLogbook(t)
	alice := lb.newUser("alice")

	// Identity lookup, base URL with a trailing slash ("//graphql").
	v := lb.gql("//graphql", alice, "Viewer", `query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }`, nil).ok(t)
	if get(v.Data, "viewer", "entity") != "alice" || get(v.Data, "viewer", "username") != "alice" || get(v.Data, "viewer", "flags") != "{}" {
		t.Fatalf("viewer = %v", v.Data)
	}
	// The OTEL probe (no auth) is answered 404.
	if st, _ := lb.call("POST", "/sdk/otel/v1/metrics", "", nil); st != 404 {
		t.Errorf("otel probe: %d, want 404", st)
	}

	// init without entity and project: the caller's entity and
	// "uncategorized", created on the fly; no display name: one is made.
	up := lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
		"name": "r2289726", "config": pyConfig, "host": "stubhost", "program": "train.py", "jobType": "train", "tags": []string{"a", "b"},
	})).ok(t)
	b := get(up.Data, "upsertBucket", "bucket")
	if get(b, "name") != "r2289726" || get(b, "project", "name") != "uncategorized" || get(b, "project", "entity", "name") != "alice" ||
		get(b, "historyLineCount") != 0.0 || get(up.Data, "upsertBucket", "inserted") != true {
		t.Fatalf("bucket = %v", up.Data)
	}
	generated, _ := get(b, "displayName").(string)
	if generated == "" {
		t.Fatalf("no display name generated: %v", b)
	}
	storageID := get(b, "id").(string)
	runPath := "/api/v1/projects/alice/uncategorized/runs/r2289726"
	r := lb.eventually(alice, runPath, func(r runDoc) bool { return r.ID != "" })
	if r.JobType != "train" || fmt.Sprint(r.Tags) != "[a b]" || r.Config["lr"] != 0.01 || r.Config["_wandb"] != nil ||
		fmt.Sprint(r.Config["opt"]) != "map[name:adam]" || get(r.Wandb, "host") != "stubhost" || get(r.Wandb, "_wandb", "t", "4") != "3.11.7" {
		t.Fatalf("run after init = %+v", r)
	}

	// The debounced update: null means keep; the config grows.
	bigger := strings.Replace(pyConfig, `"m":[]`, `"m":[],"e":{"host":"stubhost"}`, 1)
	bigger = strings.Replace(bigger, `{"lr"`, `{"epochs":{"value":5},"lr"`, 1)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
		"id": storageID, "name": "r2289726", "project": "uncategorized", "entity": "alice", "config": bigger,
	})).ok(t)
	r = lb.eventually(alice, runPath, func(r runDoc) bool { return r.Config["epochs"] == 5.0 })
	if r.Name != generated || r.JobType != "train" || fmt.Sprint(r.Tags) != "[a b]" || get(r.Wandb, "_wandb", "e", "host") != "stubhost" {
		t.Fatalf("null fields did not keep the stored values: %+v", r)
	}
	// Non-null fields replace: tags, name, notes.
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
		"id": storageID, "name": "r2289726", "project": "uncategorized", "entity": "alice", "tags": []string{"b", "c"},
		"displayName": "py-run", "notes": "baseline",
	})).ok(t)
	r = lb.eventually(alice, runPath, func(r runDoc) bool { return r.Name == "py-run" })
	if fmt.Sprint(r.Tags) != "[b c]" || r.Notes != "baseline" {
		t.Fatalf("update = %+v", r)
	}

	// Optional operations, answered as the spec says.
	lb.gql("/graphql", alice, "OrganizationCoreWeaveOrganizationID", `query OrganizationCoreWeaveOrganizationID($entityName: String!) { entity(name: $entityName) { organization { coreWeaveOrganizationId } } }`,
		map[string]any{"entityName": "alice"}).ok(t)
	f := lb.gql("/graphql", alice, "", `query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }`, nil).ok(t)
	if fmt.Sprint(get(f.Data, "serverInfo", "features")) != "[]" {
		t.Errorf("features = %v", f.Data)
	}

	// file_stream: history with NaN / Infinity, exponent floats, nested
	// dicts and text; summary; console output; system metrics. Sent twice:
	// stored once.
	fs := "/files/alice/uncategorized/r2289726/file_stream"
	first := `{"files":{
	  "wandb-history.jsonl":{"offset":0,"content":[
	    "{\"_step\":0,\"loss\":1,\"acc\":0,\"_timestamp\":1.795780499014325e+09,\"_runtime\":0.0036}",
	    "{\"_step\":1,\"loss\":NaN,\"acc\":0.5,\"_timestamp\":1.7957804995e+09,\"_runtime\":0.5}",
	    "{\"_step\":2,\"loss\":Infinity,\"grad\":-Infinity,\"text\":\"NaN here is text\",\"val\":{\"loss\":0.25},\"_timestamp\":1.7957805e+09,\"_runtime\":1}"]},
	  "wandb-summary.json":{"offset":0,"content":["{\"acc\":0.5,\"loss\":Infinity,\"_step\":2,\"_wandb\":{\"runtime\":1},\"_runtime\":1}"]},
	  "output.log":{"offset":0,"content":["2026-11-27T11:54:59.017265 epoch 0","2026-11-27T11:55:00.000000 progress 10%"]},
	  "wandb-events.jsonl":{"offset":0,"content":["{\"_wandb\":true,\"_timestamp\":1.79578051333762e+09,\"_runtime\":2.046,\"system.memory_percent\":3.65}"]}}}`
	for i := 0; i < 2; i++ {
		if st, m := lb.fileStream(alice, fs, first); st != 200 || len(m) != 0 {
			t.Fatalf("file_stream: %d %v", st, m)
		}
	}
	// The next chunk continues the offsets and rewrites a console line (a
	// progress bar).
	second := `{"files":{
	  "wandb-history.jsonl":{"offset":3,"content":["{\"_step\":3,\"loss\":0.5,\"_timestamp\":1.7957806e+09}","{\"_step\":4,\"loss\":0.25,\"_timestamp\":1.7957807e+09}"]},
	  "output.log":{"offset":1,"content":["2026-11-27T11:55:01.000000 progress 100%","2026-11-27T11:55:02.000000 done"]}},
	  "preempting":true}`
	for i := 0; i < 2; i++ {
		if st, m := lb.fileStream(alice, fs, second); st != 200 || len(m) != 0 {
			t.Fatalf("file_stream: %d %v", st, m)
		}
	}
	// A heartbeat.
	if st, _ := lb.fileStream(alice, fs, `{}`); st != 200 {
		t.Fatalf("heartbeat: %d", st)
	}

	// Uploads: CreateRunFiles, then PUTs without an API key, then
	// "uploaded" and complete in the last file_stream request.
	files := []string{"config.yaml", "wandb-metadata.json", "media/images/sample_0.png"}
	cf := lb.gql("/graphql", alice, "CreateRunFiles", createFilesQuery, map[string]any{
		"entity": "alice", "project": "uncategorized", "run": "r2289726", "files": files}).ok(t)
	list, _ := get(cf.Data, "createRunFiles", "files").([]any)
	if len(list) != len(files) {
		t.Fatalf("CreateRunFiles = %v", cf.Data)
	}
	for i, e := range list {
		name, u := get(e, "name"), get(e, "uploadUrl").(string)
		if name != files[i] || !strings.HasPrefix(u, lb.base+"/") {
			t.Fatalf("file entry %v", e)
		}
		req, _ := http.NewRequest("PUT", u, strings.NewReader("content of "+files[i]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %v %v", u, resp, err)
		}
		resp.Body.Close()
		// A tampered URL is refused.
		req, _ = http.NewRequest("PUT", strings.Replace(u, "sig=", "sig=0", 1), strings.NewReader("evil"))
		resp, err = http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 403 {
			t.Fatalf("PUT with a bad signature: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	// Read the object store as Logbook's own component (clients may only
	// publish proposals).
	nc, err := nats.Connect(lb.nats, nats.UserInfo(lb.natsAuth.User, lb.natsAuth.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(context.Background(), bus.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := obs.GetBytes(context.Background(), wandb.ObjectName("alice", "uncategorized", "r2289726", "media/images/sample_0.png"))
	if err != nil || string(got) != "content of media/images/sample_0.png" {
		t.Fatalf("stored file = %q, %v", got, err)
	}
	final := `{"files":{"wandb-summary.json":{"offset":0,"content":["{\"acc\":0.5,\"loss\":0.25,\"_step\":4}"]}},
	  "uploaded":["config.yaml","wandb-metadata.json","media/images/sample_0.png"],"complete":true,"exitcode":0}`
	for i := 0; i < 2; i++ { // a retried final request is fine too
		if st, m := lb.fileStream(alice, fs, final); st != 200 || len(m) != 0 {
			t.Fatalf("final file_stream: %d %v", st, m)
		}
	}
	r = lb.eventually(alice, runPath, func(r runDoc) bool { return r.State == "finished" })
	if r.ExitCode == nil || *r.ExitCode != 0 || r.Rows != 5 || r.Summary["loss"] != 0.25 || r.Summary["acc"] != 0.5 {
		t.Fatalf("finished run = %+v", r)
	}
	if _, ok := r.Summary["_step"]; ok {
		t.Errorf("summary holds _step: %v", r.Summary)
	}
	var hist []row
	lb.native(200, "GET", runPath+"/history", alice, nil, &hist)
	if len(hist) != 5 {
		t.Fatalf("history = %+v", hist)
	}
	if !math.IsNaN(float64(hist[1].Values["loss"])) || !math.IsInf(float64(hist[2].Values["loss"]), 1) ||
		!math.IsInf(float64(hist[2].Values["grad"]), -1) || hist[2].Values["val/loss"] != 0.25 || hist[0].Time != 1.795780499014325e+09 {
		t.Fatalf("history values = %+v", hist)
	}
	if _, ok := hist[2].Values["text"]; ok {
		t.Errorf("text stored as a metric: %+v", hist[2])
	}
	var out struct {
		Count int64 `json:"count"`
		Lines []struct {
			N    int64  `json:"n"`
			Text string `json:"text"`
		} `json:"lines"`
	}
	lb.native(200, "GET", runPath+"/lines?file=output.log", alice, nil, &out)
	if out.Count != 3 || len(out.Lines) != 3 || out.Lines[1].Text != "2026-11-27T11:55:01.000000 progress 100%" || out.Lines[2].N != 2 {
		t.Fatalf("output.log = %+v", out)
	}
	lb.native(200, "GET", runPath+"/lines?file=wandb-events.jsonl", alice, nil, &out)
	if out.Count != 1 {
		t.Fatalf("events = %+v", out)
	}

	// Resume: RunResumeStatus describes the run as wandb-core needs it.
	rsv := map[string]any{"entity": "alice", "project": "uncategorized", "name": "r2289726"}
	res := lb.gql("/graphql", alice, "RunResumeStatus", resumeQuery, rsv).ok(t)
	bk := get(res.Data, "model", "bucket")
	if bk == nil || get(bk, "historyLineCount") != 5.0 || get(bk, "logLineCount") != 3.0 || get(bk, "eventsLineCount") != 1.0 ||
		get(bk, "displayName") != "py-run" || !strings.Contains(get(bk, "wandbConfig").(string), `"t"`) {
		t.Fatalf("RunResumeStatus = %v", res.Data)
	}
	var tail []string
	if err := json.Unmarshal([]byte(get(bk, "historyTail").(string)), &tail); err != nil || len(tail) != 1 || !strings.Contains(tail[0], `"_step":4`) {
		t.Fatalf("historyTail = %v (%v)", get(bk, "historyTail"), err)
	}
	var cfg map[string]map[string]any
	if err := json.Unmarshal([]byte(get(bk, "config").(string)), &cfg); err != nil || cfg["lr"]["value"] != 0.01 || cfg["_wandb"] == nil {
		t.Fatalf("config (wrapped) = %v %v", get(bk, "config"), err)
	}
	// Non-finite values are written as W&B writes them: bare tokens.
	if sm := get(bk, "summaryMetrics").(string); !strings.Contains(sm, `"_step":4,`) || !strings.Contains(sm, `"loss":0.25`) ||
		!strings.Contains(sm, `"grad":-Infinity`) {
		t.Fatalf("summaryMetrics = %v", sm)
	}
	// resume="never" on an existing run: the client refuses by itself,
	// given the bucket above. resume="must" on a missing run: bucket null.
	miss := lb.gql("/graphql", alice, "RunResumeStatus", resumeQuery, map[string]any{"entity": "alice", "project": "uncategorized", "name": "nosuchrun"}).ok(t)
	if m := get(miss.Data, "model"); m == nil || get(m, "bucket") != nil || get(m, "entity", "name") != "alice" {
		t.Fatalf("missing run: %v", miss.Data)
	}
	// resume="allow": UpsertBucket with the resumed storage id, history
	// continues at historyLineCount with the next _step.
	up = lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
		"id": get(bk, "id"), "name": "r2289726", "project": "uncategorized", "entity": "alice", "config": bigger,
	})).ok(t)
	if get(up.Data, "upsertBucket", "bucket", "historyLineCount") != 5.0 {
		t.Fatalf("resumed bucket = %v", up.Data)
	}
	lb.eventually(alice, runPath, func(r runDoc) bool { return r.State == "running" })
	resumed := `{"files":{"wandb-history.jsonl":{"offset":5,"content":["{\"_step\":5,\"loss\":0.125}","{\"_step\":6,\"loss\":0.0625}"]},
	  "output.log":{"offset":3,"content":["resumed"]}},"complete":true,"exitcode":1}`
	if st, _ := lb.fileStream(alice, fs, resumed); st != 200 {
		t.Fatalf("resumed file_stream: %d", st)
	}
	r = lb.eventually(alice, runPath, func(r runDoc) bool { return r.State == "failed" })
	if r.Rows != 7 || *r.ExitCode != 1 {
		t.Fatalf("resumed run = %+v", r)
	}

	// A JS-made run (no _wandb.t) is new for a resuming Python client.
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, map[string]any{"name": "jsrun001", "project": "uncategorized",
		"entity": "alice", "config": `{"lr":0.1}`}).ok(t)
	res = lb.gql("/graphql", alice, "RunResumeStatus", resumeQuery, map[string]any{"entity": "alice", "project": "uncategorized", "name": "jsrun001"}).ok(t)
	if get(res.Data, "model", "bucket", "wandbConfig") != "{}" {
		t.Fatalf("JS run resume status = %v", res.Data)
	}
}

// TestRefusals checks that W&B requests go through the policy: a Viewer's
// and a non-member's init fail saying why, and writes to another member's
// run are refused.
func TestRefusals(t *testing.T) {
	lb := mustLogbook(t)
	alice, bob, vic, mallory := lb.newUser("alice"), lb.newUser("bob"), lb.newUser("vic"), lb.newUser("mallory")
	lb.native(201, "POST", "/api/v1/projects", alice, map[string]string{"name": "shared"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/shared/members", alice, map[string]string{"username": "bob", "role": "member"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/shared/members", alice, map[string]string{"username": "vic", "role": "viewer"}, nil)

	init := func(key, entity, project, run string) gqlAnswer {
		return lb.gql("/graphql", key, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
			"name": run, "entity": entity, "project": project, "config": pyConfig}))
	}
	init(alice, "alice", "shared", "alicerun").ok(t)
	init(vic, "alice", "shared", "vicrun").failed(t, "a Viewer may not start a run")
	init(mallory, "alice", "shared", "malrun").failed(t, "not a member")
	init(mallory, "alice", "newproj", "malrun").failed(t, "cannot be created")
	init(bob, "alice", "shared", "alicerun").failed(t, "belongs to \"alice\"")
	if st, m := lb.fileStream(bob, "/files/alice/shared/alicerun/file_stream",
		`{"files":{"wandb-history.jsonl":{"offset":0,"content":["{\"_step\":0,\"loss\":1}"]}}}`); st != 403 || !strings.Contains(fmt.Sprint(m), "belongs to") {
		t.Fatalf("bob logging to alice's run: %d %v", st, m)
	}
	if st, _ := lb.fileStream(bob, "/files/alice/shared/alicerun/file_stream", `{"files":{"output.log":{"offset":0,"content":["x"]}}}`); st != 403 {
		t.Fatalf("bob writing alice's output: %d", st)
	}
	cf := lb.gql("/graphql", bob, "CreateRunFiles", createFilesQuery, map[string]any{"entity": "alice", "project": "shared", "run": "alicerun", "files": []string{"x.txt"}})
	cf.failed(t, "belongs to")
	// A bad key is 401 (the clients report it), no key too.
	if st, _ := lb.call("POST", "/graphql", basic("lb-nosuchkey0000000000000000000000000000000000000"), `{"query":"query Viewer { viewer { entity } }"}`); st != 401 {
		t.Errorf("bad key: %d", st)
	}
	if st, _ := lb.call("POST", "/files/alice/shared/alicerun/file_stream", "", `{}`); st != 401 {
		t.Errorf("no key: %d", st)
	}
	// Unknown operations and client mistakes: 200 + errors, or 4xx, never 5xx.
	lb.gql("/graphql", alice, "OrgFeatureFlags", `query OrgFeatureFlags { organization { flags } }`, nil).failed(t, "not supported")
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "bad:run"})).failed(t, "run id")
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "r1", "config": "[1,2]"})).failed(t, "config")
	if st, data := lb.call("POST", "/graphql", basic(alice), `{"query": `); st != 200 || !strings.Contains(string(data), "errors") {
		t.Errorf("broken JSON: %d %s", st, data)
	}
	if st, _ := lb.call("POST", "/files/alice/shared/alicerun/file_stream", basic(alice), `{"files": [`); st != 400 {
		t.Errorf("broken file_stream body: %d", st)
	}
	if st, _ := lb.call("POST", "/files/alice/shared/nosuchrun/file_stream", basic(alice), `{}`); st != 404 {
		t.Errorf("file_stream to a missing run: %d", st)
	}

	// Stopped from Logbook: the run is finished as killed through the
	// native API; the client is told to stop.
	lb.native(200, "POST", "/api/v1/projects/alice/shared/runs/alicerun/finish", alice, map[string]string{"state": "killed"}, nil)
	if st, m := lb.fileStream(alice, "/files/alice/shared/alicerun/file_stream", `{}`); st != 200 || m["stopped"] != true {
		t.Fatalf("stopped run: %d %v", st, m)
	}
	s := lb.gql("/graphql", alice, "RunStoppedStatus", `query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) { project(name:$projectName, entityName:$entityName) { run(name:$runId) { stopped } } }`,
		map[string]any{"projectName": "shared", "entityName": "alice", "runId": "alicerun"}).ok(t)
	if get(s.Data, "project", "run", "stopped") != true {
		t.Fatalf("RunStoppedStatus = %v", s.Data)
	}
	// Older clients' Viewer with serverInfo, and ServerInfo.
	v := lb.gql("/graphql", alice, "Viewer", `query Viewer { viewer { id entity username flags teams { edges { node { name } } } } serverInfo { cliVersionInfo latestLocalVersionInfo { outOfDate latestVersionString versionOnThisInstanceString } } }`, nil).ok(t)
	if get(v.Data, "serverInfo", "cliVersionInfo") == nil {
		t.Errorf("old Viewer = %v", v.Data)
	}
	lb.gql("/graphql", alice, "ServerInfo", `query ServerInfo { serverInfo { cliVersionInfo latestLocalVersionInfo { outOfDate } } }`, nil).ok(t)
}
