package wandb_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDefectsFoundByRealClients has one subtest per defect the real
// clients found (issue 14), on one Logbook.
func TestDefectsFoundByRealClients(t *testing.T) {
	lb := mustLogbook(t)
	alice := lb.newUser("alice")
	init := func(run string, over map[string]any) gqlAnswer {
		v := map[string]any{"name": run, "project": "proj", "entity": "alice", "config": pyConfig, "host": "h", "program": "train.py"}
		for k, x := range over {
			v[k] = x
		}
		return lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(v))
	}
	runPath := func(run string) string { return "/api/v1/projects/alice/proj/runs/" + run }
	fs := func(run string) string { return "/files/alice/proj/" + run + "/file_stream" }
	hist := func(offset int, steps ...int) string {
		var lines []string
		for _, s := range steps {
			lines = append(lines, fmt.Sprintf(`"{\"_step\":%d,\"loss\":%d}"`, s, s))
		}
		return fmt.Sprintf(`{"files":{"wandb-history.jsonl":{"offset":%d,"content":[%s]},"wandb-summary.json":{"offset":0,"content":["{\"loss\":%d}"]}}}`,
			offset, strings.Join(lines, ","), steps[len(steps)-1])
	}

	// 1. A run stopped from Logbook is not revived by wandb-core's
	// config-only UpsertBucket ($id null) at finish, and the final
	// complete with exit code 255 does not mark it failed.
	t.Run("1 config-only upsert does not resume a stopped run", func(t *testing.T) {
		for _, c := range []struct{ run, state string }{{"killedrun", "killed"}, {"adminstop", "finished"}} {
			init(c.run, nil).ok(t)
			if st, _ := lb.fileStream(alice, fs(c.run), hist(0, 0, 1, 2)); st != 200 {
				t.Fatal(st)
			}
			lb.eventually(alice, runPath(c.run), func(r runDoc) bool { return r.Rows == 3 })
			lb.native(200, "POST", runPath(c.run)+"/finish", alice, map[string]string{"state": c.state}, nil)
			lb.eventually(alice, runPath(c.run), func(r runDoc) bool { return r.State == c.state })
			bigger := strings.Replace(pyConfig, `{"lr"`, `{"epochs":{"value":9},"lr"`, 1)
			lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
				"id": nil, "name": c.run, "project": "proj", "entity": "alice", "config": bigger})).ok(t)
			st, m := lb.fileStream(alice, fs(c.run), `{"complete":true,"exitcode":255}`)
			if st != 200 || (c.state == "killed") != (m["stopped"] == true) {
				t.Fatalf("final file_stream of a %s run: %d %v", c.state, st, m)
			}
			r := lb.eventually(alice, runPath(c.run), func(r runDoc) bool { return r.Config["epochs"] == 9.0 })
			if r.State != c.state || r.Rows != 3 {
				t.Fatalf("%s run after the client's finish: %+v", c.state, r)
			}
		}
	})

	// 2. An invalid key on /graphql: 401 with GraphQL's error shape.
	t.Run("2 graphql 401 in GraphQL's shape", func(t *testing.T) {
		for _, auth := range []string{basic("lb-nosuchkey0000000000000000000000000000000000000"), ""} {
			st, data := lb.call("POST", "/graphql", auth, `{"query":"query Viewer { viewer { entity } }"}`)
			var a struct {
				Errors []struct{ Message string } `json:"errors"`
			}
			if st != 401 || json.Unmarshal(data, &a) != nil || len(a.Errors) != 1 || !strings.Contains(a.Errors[0].Message, "WANDB_API_KEY") {
				t.Fatalf("bad key: %d %s", st, data)
			}
		}
	})

	// 3. Saved files named with '#', '?' or '\' get escaped upload URLs;
	// a name Logbook refuses gets no URL, and only that one.
	t.Run("3 odd file names", func(t *testing.T) {
		init("filesrun", nil).ok(t)
		files := []string{"a#1.txt", "what?.txt", `win\path.txt`, "../evil", "config.yaml"}
		cf := lb.gql("/graphql", alice, "CreateRunFiles", createFilesQuery, map[string]any{
			"entity": "alice", "project": "proj", "run": "filesrun", "files": files}).ok(t)
		list, _ := get(cf.Data, "createRunFiles", "files").([]any)
		if len(list) != len(files) {
			t.Fatalf("CreateRunFiles = %v", cf.Data)
		}
		for i, e := range list {
			u, _ := get(e, "uploadUrl").(string)
			if get(e, "name") != files[i] || (u == "") != (files[i] == "../evil") {
				t.Fatalf("entry %d = %v", i, e)
			}
			if u == "" {
				continue
			}
			req, _ := http.NewRequest("PUT", u, strings.NewReader("body of "+files[i]))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("PUT %s: %v %v", u, resp, err)
			}
			resp.Body.Close()
		}
		// Read back through the native API: every name intact.
		var listed struct {
			Files []struct {
				Name string `json:"name"`
				Size int64  `json:"size"`
			} `json:"files"`
		}
		lb.native(200, "GET", runPath("filesrun")+"/files", alice, nil, &listed)
		if len(listed.Files) != 4 {
			t.Fatalf("listed %+v", listed)
		}
		for _, f := range listed.Files {
			body := lb.download(alice, runPath("filesrun")+"/files/"+escapePath(f.Name))
			if body != "body of "+f.Name || f.Size != int64(len(body)) {
				t.Fatalf("%s: %q (%d bytes listed)", f.Name, body, f.Size)
			}
		}
	})

	// 4. Re-using a run id without resume: an init of a stopped run is
	// refused, saying how to resume; a config-only re-init (the JS SDK's,
	// which has no resume) changes nothing of history or summary.
	t.Run("4 reused run id", func(t *testing.T) {
		init("reused", nil).ok(t)
		lb.fileStream(alice, fs("reused"), hist(0, 0, 1, 2))
		lb.fileStream(alice, fs("reused"), `{"complete":true,"exitcode":0}`)
		lb.eventually(alice, runPath("reused"), func(r runDoc) bool { return r.State == "finished" })
		init("reused", nil).failed(t, `resume`)
		init("reused", map[string]any{"host": nil, "program": nil, "displayName": "again"}).failed(t, "already used by a finished run")
		lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, map[string]any{"name": "reused", "project": "proj", "entity": "alice", "config": `{"lr":0.5}`}).ok(t)
		if st, _ := lb.fileStream(alice, fs("reused"), hist(0, 0, 1)); st != 200 {
			t.Fatal(st)
		}
		r := lb.eventually(alice, runPath("reused"), func(r runDoc) bool { return r.Config["lr"] == 0.5 })
		if r.State != "finished" || r.Rows != 3 || r.Summary["loss"] != 2 {
			t.Fatalf("re-used run: %+v", r)
		}
	})

	// 5. Names W&B accepts: project names and run ids with '.'.
	t.Run("5 dotted names", func(t *testing.T) {
		up := lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{
			"name": "exp.1", "project": "resnet.v2", "entity": "alice", "config": pyConfig})).ok(t)
		if get(up.Data, "upsertBucket", "bucket", "project", "name") != "resnet.v2" || get(up.Data, "upsertBucket", "bucket", "name") != "exp.1" {
			t.Fatalf("bucket %v", up.Data)
		}
		if st, _ := lb.fileStream(alice, "/files/alice/resnet.v2/exp.1/file_stream", hist(0, 0, 1)); st != 200 {
			t.Fatal(st)
		}
		lb.fileStream(alice, "/files/alice/resnet.v2/exp.1/file_stream", `{"complete":true,"exitcode":0}`)
		r := lb.eventually(alice, "/api/v1/projects/alice/resnet.v2/runs/exp.1", func(r runDoc) bool { return r.State == "finished" })
		if r.Rows != 2 || r.ID != "exp.1" {
			t.Fatalf("dotted run %+v", r)
		}
		// A project without a dot next to it is not confused with it.
		init("plain", map[string]any{"project": "resnet"}).ok(t)
		var runs []runDoc
		lb.native(200, "GET", "/api/v1/projects/alice/resnet.v2/runs", alice, nil, &runs)
		if len(runs) != 1 || runs[0].ID != "exp.1" {
			t.Fatalf("runs of resnet.v2: %+v", runs)
		}
		// Still refused: characters other than letters, digits, '-', '_', '.'.
		lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "a:b", "project": "p"})).failed(t, "run id")
		lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "ab", "project": ".p"})).failed(t, "project")
	})

	// 6. A dropped file_stream chunk (the offset jumps) is recorded as a
	// gap: which lines and steps never arrived, counted in the run's data
	// quality; a retry changes nothing; a late chunk fills its lines.
	t.Run("6 file_stream gaps", func(t *testing.T) {
		init("gappy", nil).ok(t)
		lb.fileStream(alice, fs("gappy"), hist(0, 0, 1, 2))
		lb.fileStream(alice, fs("gappy"), hist(5, 5, 6)) // lines 3 and 4 lost
		lb.fileStream(alice, fs("gappy"), hist(5, 5, 6)) // a retry
		type dq struct {
			DataQuality *struct {
				Missing int64 `json:"missing_history_lines"`
				Gaps    []struct {
					First  int64 `json:"first_line"`
					Last   int64 `json:"last_line"`
					After  int64 `json:"after_step"`
					Before int64 `json:"before_step"`
				} `json:"history_gaps"`
			} `json:"data_quality"`
			HistoryLines int64 `json:"history_lines"`
		}
		var d dq
		lb.eventually(alice, runPath("gappy"), func(r runDoc) bool { return r.Rows == 5 })
		lb.native(200, "GET", runPath("gappy"), alice, nil, &d)
		if d.DataQuality == nil || d.DataQuality.Missing != 2 || len(d.DataQuality.Gaps) != 1 || d.HistoryLines != 7 {
			t.Fatalf("data quality %+v", d)
		}
		if g := d.DataQuality.Gaps[0]; g.First != 3 || g.Last != 4 || g.After != 2 || g.Before != 5 {
			t.Fatalf("gap %+v", g)
		}
		// Resume continues after the last line that arrived.
		res := lb.gql("/graphql", alice, "RunResumeStatus", resumeQuery, map[string]any{"entity": "alice", "project": "proj", "name": "gappy"}).ok(t)
		if get(res.Data, "model", "bucket", "historyLineCount") != 7.0 {
			t.Fatalf("historyLineCount %v", get(res.Data, "model", "bucket", "historyLineCount"))
		}
		// The lost chunk arrives late: the gap is filled.
		lb.fileStream(alice, fs("gappy"), hist(3, 3, 4))
		for i := 0; ; i++ {
			d = dq{}
			lb.native(200, "GET", runPath("gappy"), alice, nil, &d)
			if d.DataQuality != nil && d.DataQuality.Missing == 0 && len(d.DataQuality.Gaps) == 0 {
				break
			}
			if i > 100 {
				t.Fatalf("gap not filled: %+v", d.DataQuality)
			}
			sleep()
		}
	})
}

// download GETs a file through the native API with a bearer key.
func (lb *logbook) download(key, path string) string {
	lb.t.Helper()
	req, _ := http.NewRequest("GET", lb.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		lb.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func sleep() { time.Sleep(50 * time.Millisecond) }

// escapePath escapes each part of a file path for a URL.
func escapePath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
