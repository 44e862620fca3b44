package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logbook/logbook/client"
)

// TestRunsTheWayTeamsUseThem: names under races, renames, search, charts,
// export, resume and bad input against the all-in-one Logbook.
func TestRunsTheWayTeamsUseThem(t *testing.T) {
	sys := mustAllInOne(t)
	admin := api{t, sys.WriteURL, adminKey}
	aliceKey := newUser(t, admin, "alice", "alice@example.com")
	alice := api{t, sys.WriteURL, aliceKey}
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "seg"}, nil)
	const proj = "/api/v1/projects/alice/seg"

	// 50 clients start my-run at the same moment: 50 distinct names.
	type started struct {
		ID   string `json:"run_id"`
		Name string `json:"run_name"`
		Seq  uint64 `json:"seq"`
	}
	var wg sync.WaitGroup
	res := make([]started, 50)
	gate := make(chan struct{})
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			alice.must(201, "POST", proj+"/runs", map[string]any{"name": "my-run", "job_type": []string{"train", "eval"}[i%2],
				"group": fmt.Sprintf("g%d", i%3), "tags": []string{fmt.Sprintf("t%d", i%4), "all"},
				"config": map[string]any{"optimizer": map[string]any{"lr": float64(i) / 1000, "name": "adam"}}}, &res[i])
		}()
	}
	close(gate)
	wg.Wait()
	names := map[string]bool{}
	var maxSeq uint64
	for _, r := range res {
		names[r.Name] = true
		maxSeq = max(maxSeq, r.Seq)
	}
	for i := 1; i <= 50; i++ {
		want := "my-run"
		if i > 1 {
			want = fmt.Sprintf("my-run-%d", i)
		}
		if !names[want] {
			t.Fatalf("no run named %s among %d names: %v", want, len(names), names)
		}
	}
	// A rename obeys the same rule.
	var upd started
	alice.must(200, "PATCH", proj+"/runs/"+res[7].ID, map[string]any{"name": "my-run"}, &upd)
	if upd.Name != "my-run-51" {
		t.Fatalf("rename to my-run gives %q, want my-run-51", upd.Name)
	}
	// Summary per run: the run index i logs loss = i.
	for i, r := range res {
		alice.must(202, "POST", proj+"/runs/"+r.ID+"/log", map[string]any{"rows": []map[string]any{
			{"step": 0, "values": map[string]float64{"loss": float64(i) + 100}}, {"step": 1, "values": map[string]float64{"loss": float64(i)}}}}, nil)
	}
	var fin started
	alice.must(200, "POST", proj+"/runs/"+res[49].ID+"/finish", map[string]any{"exit_code": 0}, &fin)
	alice.must(200, "POST", proj+"/runs/"+res[48].ID+"/finish", map[string]any{"state": "killed"}, &fin)

	// Search: wait until the read model has every row.
	list := func(query string) ([]runView, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", sys.ReadURL+proj+"/runs?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+aliceKey)
		req.Header.Set("X-Logbook-Min-Seq", fmt.Sprint(fin.Seq))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET runs?%s: %d %s", query, resp.StatusCode, body)
		}
		var runs []runView
		if err := jsonUnmarshal(body, &runs); err != nil {
			t.Fatal(err)
		}
		return runs, resp.Header
	}
	waitFor(t, func() bool {
		runs, _ := list("summary.loss<1000")
		return len(runs) == 50
	})
	for _, c := range []struct {
		query string
		want  int
	}{
		{"job_type=train", 25},
		{"job_type=train&group=g0", 9},
		{"state=finished,killed", 2},
		{"state=running", 48},
		{"owner=alice", 50},
		{"tag=t1", 13},
		{"tags_any=t1,t2", 25},
		{"tags_all=t1,all", 13},
		{"config.optimizer.name=adam", 50},
		{"config.optimizer.lr=0.01", 1},
		{url.QueryEscape("config.optimizer.lr>=0.01") + "&" + url.QueryEscape("config.optimizer.lr<0.02"), 10},
		{"filter=" + url.QueryEscape("config.optimizer.lr<0.005"), 5},
		{"summary.loss%3C10", 10},
		{"summary.loss%3E%3D45&job_type=eval", 3},
	} {
		runs, h := list(c.query)
		if len(runs) != c.want || h.Get("X-Total-Count") != fmt.Sprint(c.want) {
			t.Errorf("runs?%s: %d runs (total %s), want %d", c.query, len(runs), h.Get("X-Total-Count"), c.want)
		}
	}
	// Sorted, paged with a cursor and a total.
	var got []float64
	query := "sort=-summary.loss&limit=20"
	for pages := 0; ; pages++ {
		runs, h := list(query)
		if h.Get("X-Total-Count") != "50" {
			t.Fatalf("total %q", h.Get("X-Total-Count"))
		}
		for _, r := range runs {
			got = append(got, r.Summary["loss"])
		}
		if h.Get("X-Next-Cursor") == "" {
			break
		}
		query = "sort=-summary.loss&limit=20&cursor=" + url.QueryEscape(h.Get("X-Next-Cursor"))
	}
	if len(got) != 50 || !sort.IsSorted(sort.Reverse(sort.Float64Slice(got))) || got[0] != 49 {
		t.Fatalf("paged by loss descending: %v", got)
	}
	runs, _ := list("sort=name&limit=3")
	if runs[0].Name != "my-run" || runs[1].Name != "my-run-10" {
		t.Errorf("sorted by name: %s, %s", runs[0].Name, runs[1].Name)
	}
	var groups struct {
		Total  int `json:"total"`
		Groups []struct {
			Value string `json:"value"`
			Count int    `json:"count"`
		} `json:"groups"`
	}
	alice.must(200, "GET", proj+"/run-groups?by=job_type&state=running", nil, &groups)
	if groups.Total != 48 || len(groups.Groups) != 2 || groups.Groups[0].Count+groups.Groups[1].Count != 48 {
		t.Errorf("run-groups by job_type: %+v", groups)
	}
	// Filters that do not parse: 400 with a clear message.
	for _, q := range []string{"config.optimizer.lr%3E%3Dabc", "sort=colour", "summary.loss%3Dhigh", "cursor=nope", "limit=0", "filter=lr%3C1", "config.x"} {
		var e apiError
		if st := alice.do("GET", proj+"/runs?"+q, nil, &e); st != 400 || e.Error.Code != "invalid_filter" || e.Error.Message == "" {
			t.Errorf("runs?%s: %d %+v, want 400 invalid_filter", q, st, e)
		}
	}

	// Charts and export of a longer history, through the Go client; a
	// resumed run continues its steps.
	ctx := context.Background()
	run, err := client.Init(ctx, client.Options{BaseURL: sys.WriteURL, APIKey: aliceKey, Entity: "alice", Project: "seg", ID: "long-run", BatchRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		_ = run.Log(map[string]any{"loss": float64(3000 - i), "acc": float64(i) / 3000})
	}
	if err := run.FinishWithCode(1); err != nil {
		t.Fatal(err)
	}
	run, err = client.Init(ctx, client.Options{BaseURL: sys.WriteURL, APIKey: aliceKey, Entity: "alice", Project: "seg", ID: "long-run", Resume: "must"})
	if err != nil {
		t.Fatal(err)
	}
	if run.LastStep != 2999 {
		t.Fatalf("resumed run's last step %d, want 2999", run.LastStep)
	}
	_ = run.Log(map[string]any{"loss": 0.5})
	if err := run.Finish(); err != nil {
		t.Fatal(err)
	}
	var view runView
	alice.must(200, "GET", fmt.Sprintf("%s/runs/long-run?min_seq=%d", proj, run.Seq()), nil, &view)
	if view.State != "finished" || view.Summary["loss"] != 0.5 {
		t.Fatalf("resumed run: %+v", view)
	}
	var buckets []struct {
		Start, End, Count, Step int64
		Min, Max, Last          float64
	}
	alice.must(200, "GET", proj+"/runs/long-run/sampled?metric=loss&buckets=10", nil, &buckets)
	if len(buckets) != 10 || buckets[0].Start != 0 || buckets[0].Count != 301 || buckets[0].Max != 3000 || buckets[9].Last != 0.5 || buckets[9].Step != 3000 {
		t.Fatalf("sampled: %+v", buckets)
	}
	get := func(path string) string {
		req, _ := http.NewRequest("GET", sys.ReadURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+aliceKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	csv := strings.Split(strings.TrimSpace(get(proj+"/runs/long-run/export?format=csv")), "\n")
	if len(csv) != 3002 || csv[0] != "step,time,acc,loss" || !strings.HasPrefix(csv[3001], "3000,") || !strings.HasSuffix(csv[3001], ",,0.5") {
		t.Fatalf("csv export: %d lines, header %q, last %q", len(csv), csv[0], csv[len(csv)-1])
	}
	nd := strings.Split(strings.TrimSpace(get(proj+"/runs/long-run/export?metrics=loss&min_step=2990")), "\n")
	if len(nd) != 11 || !strings.HasPrefix(nd[0], `{"step":2990,`) {
		t.Fatalf("ndjson export from 2990: %d lines, first %q", len(nd), nd[0])
	}

	// Bad input: a clear error, and nothing stored changes.
	before, _ := list("")
	deep := strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20)
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", proj + "/runs", map[string]any{"id": "bad id"}, 400, "invalid"},
		{"POST", proj + "/runs", map[string]any{"id": "nope", "resume": "must"}, 404, "run_not_found"},
		{"POST", proj + "/runs", []byte(`{"config":` + deep + `}`), 400, "invalid"},
		{"POST", proj + "/runs", map[string]any{"config": map[string]string{"x": strings.Repeat("y", 300<<10)}}, 400, "invalid"},
		{"POST", proj + "/runs", map[string]any{"tags": many}, 400, "invalid"},
		{"POST", proj + "/runs", map[string]any{"tags": []string{strings.Repeat("t", 65)}}, 400, "invalid"},
		{"POST", proj + "/runs", map[string]any{"id": "long-run"}, 409, "run_exists"},
		{"POST", proj + "/runs/unknown/log", map[string]any{"rows": []map[string]any{{"step": 0, "values": map[string]float64{"x": 1}}}}, 404, "run_not_found"},
		{"POST", proj + "/runs/unknown/heartbeat", nil, 404, "run_not_found"},
		{"POST", proj + "/runs/long-run/heartbeat", nil, 409, "run_finished"},
		{"GET", proj + "/runs/unknown", nil, 404, "run_not_found"},
		{"GET", proj + "/runs/long-run/sampled?metric=loss&buckets=0", nil, 400, "invalid"},
		{"GET", proj + "/runs/long-run/export?format=xml", nil, 400, "invalid"},
	} {
		var e apiError
		if st := alice.do(c.method, c.path, c.body, &e); st != c.status || e.Error.Code != c.code {
			t.Errorf("%s %s: %d %+v, want %d %s", c.method, c.path, st, e, c.status, c.code)
		}
	}
	after, _ := list("")
	if len(after) != len(before) {
		t.Errorf("bad input changed the runs: %d before, %d after", len(before), len(after))
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// waitFor polls cond until it holds (or fails the test after 30s).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
