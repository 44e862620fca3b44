package projections_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

type doc struct {
	ID      string                  `json:"id"`
	Name    string                  `json:"name"`
	State   string                  `json:"state"`
	Summary map[string]events.Value `json:"summary"`
	Metrics map[string]struct {
		Min, Max, Last events.Value
	} `json:"metrics"`
}

func ids(t *testing.T, p projections.RunPage) []string {
	t.Helper()
	out := []string{}
	for _, r := range p.Runs {
		var d doc
		if err := json.Unmarshal(r, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.ID)
	}
	return out
}

// searchWorld: five runs with everything filters look at.
func searchWorld(t *testing.T) *feeder {
	f := openStore(t)
	type spec struct {
		id, job, group, owner string
		tags                  []string
		config                string
		loss                  float64
	}
	for i, s := range []spec{
		{"a", "train", "g1", "alice", []string{"base", "unet"}, `{"optimizer":{"lr":0.001,"name":"adam"},"epochs":10}`, 0.5},
		{"b", "train", "g1", "bob", []string{"unet"}, `{"optimizer":{"lr":0.01,"name":"sgd"},"epochs":20}`, 0.3},
		{"c", "eval", "g2", "alice", []string{"base"}, `{"optimizer":{"lr":0.1},"wandb_style":{"value":3,"desc":null}}`, 0.9},
		{"d", "train", "", "bob", nil, `{"optimizer":{"lr":"auto"}}`, 0.1},
		{"e", "eval", "g2", "alice", []string{"x"}, `{}`, -1},
	} {
		at := t0.Add(time.Duration(i) * time.Minute)
		f.add(events.Event{Entity: "alice", Project: "p", Run: s.id, Actor: s.owner, Time: at, Payload: events.RunStartedV1{
			RunID: s.id, Name: "run-" + s.id, JobType: s.job, Group: s.group, Tags: s.tags, Config: json.RawMessage(s.config)}})
		if s.loss >= 0 {
			f.add(events.Event{Entity: "alice", Project: "p", Run: s.id, Time: at, Payload: events.MustRows([]events.Row{
				{Step: 0, Values: map[string]events.Value{"loss": events.Value(s.loss + 1)}},
				{Step: 1, Values: map[string]events.Value{"loss": events.Value(s.loss)}}})})
		}
	}
	f.add(events.Event{Entity: "alice", Project: "p", Run: "b", Payload: events.RunFinishedV1{State: events.StateFinished}})
	f.add(events.Event{Entity: "alice", Project: "p", Run: "d", Payload: events.RunCrashedV1{}})
	return f
}

func TestSearchFilters(t *testing.T) {
	f := searchWorld(t)
	// Index loaded before later changes: updates must reach it.
	if _, err := f.s.SearchRuns("alice", "p", projections.RunQuery{}); err != nil {
		t.Fatal(err)
	}
	f.add(events.Event{Entity: "alice", Project: "p", Run: "e", Payload: events.RunUpdatedV1{AddTags: []string{"late"}}})
	conds := func(ss ...string) []projections.Cond {
		var out []projections.Cond
		for _, s := range ss {
			c, err := projections.ParseCond(s)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			out = append(out, c)
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    projections.RunQuery
		want string
	}{
		{"all, by start", projections.RunQuery{}, "a b c d e"},
		{"job_type", projections.RunQuery{JobType: "train"}, "a b d"},
		{"group", projections.RunQuery{Group: "g2"}, "c e"},
		{"owner", projections.RunQuery{Owner: "bob"}, "b d"},
		{"state", projections.RunQuery{States: []string{"running"}}, "a c e"},
		{"states any", projections.RunQuery{States: []string{"finished", "crashed"}}, "b d"},
		{"tags any", projections.RunQuery{TagsAny: []string{"base", "x"}}, "a c e"},
		{"tags all", projections.RunQuery{TagsAll: []string{"base", "unet"}}, "a"},
		{"tag added later", projections.RunQuery{TagsAll: []string{"late"}}, "e"},
		{"config equality (number)", projections.RunQuery{Conds: conds("config.optimizer.lr=0.01")}, "b"},
		{"config equality (string)", projections.RunQuery{Conds: conds("config.optimizer.name=adam")}, "a"},
		{"config inequality", projections.RunQuery{Conds: conds("config.optimizer.name!=adam")}, "b c d e"},
		{"config range", projections.RunQuery{Conds: conds("config.optimizer.lr>=0.001", "config.optimizer.lr<0.1")}, "a b"},
		{"config range skips strings", projections.RunQuery{Conds: conds("config.optimizer.lr>0")}, "a b c"},
		{"config W&B value wrapper", projections.RunQuery{Conds: conds("config.wandb_style=3")}, "c"},
		{"summary range", projections.RunQuery{Conds: conds("summary.loss<0.5")}, "b d"},
		{"summary range and job", projections.RunQuery{JobType: "train", Conds: conds("summary.loss>0.2")}, "a b"},
		{"sort summary asc (missing last)", projections.RunQuery{Sort: "summary.loss"}, "d b a c e"},
		{"sort summary desc (missing last)", projections.RunQuery{Sort: "summary.loss", Desc: true}, "c a b d e"},
		{"sort name desc", projections.RunQuery{Sort: "name", Desc: true}, "e d c b a"},
		{"sort start desc", projections.RunQuery{Sort: "created_at", Desc: true}, "e d c b a"},
		{"sort state", projections.RunQuery{Sort: "state"}, "d b a c e"},
		{"sort owner desc (ties by id)", projections.RunQuery{Sort: "owner", Desc: true}, "b d a c e"},
		{"sort job_type", projections.RunQuery{Sort: "job_type"}, "c e a b d"},
		{"sort group (missing last)", projections.RunQuery{Sort: "group"}, "a b c e d"},
		{"sort group desc (missing last)", projections.RunQuery{Sort: "group", Desc: true}, "c e a b d"},
		{"sort config numbers, then text, then missing", projections.RunQuery{Sort: "config.optimizer.lr"}, "a b c d e"},
		{"sort config desc", projections.RunQuery{Sort: "config.optimizer.lr", Desc: true}, "d c b a e"},
		{"sort config with a filter", projections.RunQuery{Sort: "config.epochs", Desc: true, JobType: "train"}, "b a d"},
		{"search name, any case", projections.RunQuery{Search: "RUN-B"}, "b"},
		{"search id", projections.RunQuery{Search: "c"}, "c"},
		{"search and sort", projections.RunQuery{Search: "run-", Sort: "name", Desc: true, Owner: "alice"}, "e c a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := f.s.SearchRuns("alice", "p", c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids(t, p), " "); got != c.want || p.Total != len(strings.Fields(c.want)) {
				t.Fatalf("got %q (total %d), want %q", got, p.Total, c.want)
			}
		})
	}
	// The summary carries last, min and max per metric.
	p, _ := f.s.SearchRuns("alice", "p", projections.RunQuery{Owner: "bob", Sort: "name"})
	var b doc
	_ = json.Unmarshal(p.Runs[0], &b)
	if m := b.Metrics["loss"]; b.Summary["loss"] != 0.3 || m.Min != 0.3 || m.Max != 1.3 || m.Last != 0.3 {
		t.Fatalf("run b summary %v metrics %+v", b.Summary, b.Metrics)
	}
	// A deleted run leaves the index.
	f.add(events.Event{Entity: "alice", Project: "p", Run: "a", Payload: events.RunDeletedV1{}})
	if p, _ := f.s.SearchRuns("alice", "p", projections.RunQuery{}); strings.Join(ids(t, p), " ") != "b c d e" {
		t.Fatalf("after deleting a: %v", ids(t, p))
	}
	groups, total, err := f.s.CountRuns("alice", "p", projections.RunQuery{}, "job_type")
	if err != nil || total != 4 || fmt.Sprint(groups) != "[{eval 2 map[]} {train 2 map[]}]" {
		t.Fatalf("group by job_type: %v %d %v", groups, total, err)
	}
	groups, _, _ = f.s.CountRuns("alice", "p", projections.RunQuery{States: []string{"running"}}, "group")
	if fmt.Sprint(groups) != "[{g2 2 map[]}]" {
		t.Fatalf("group by group of running runs: %v", groups)
	}
	// A deleted project leaves the index.
	f.add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectDeletedV1{}})
	if p, _ := f.s.SearchRuns("alice", "p", projections.RunQuery{}); len(p.Runs) != 0 {
		t.Fatalf("runs of a deleted project: %v", ids(t, p))
	}
}

// With fields, a run carries its base fields and only the chosen config
// paths (nested again) and summary values: a runs table downloads what it
// shows.
func TestSearchFields(t *testing.T) {
	f := searchWorld(t)
	full, err := f.s.SearchRuns("alice", "p", projections.RunQuery{Search: "run-a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fields []string
		want   string
	}{
		{[]string{"config.optimizer.name", "config.epochs", "summary.loss", "summary.nope", "config.nope"},
			`"config":{"epochs":10,"optimizer":{"name":"adam"}},"summary":{"loss":0.5}}`},
		{[]string{"config.optimizer"}, `"config":{"optimizer":{"lr":0.001,"name":"adam"}},"summary":{}}`},
		{[]string{"metrics"}, `"config":{},"summary":{},"metrics":{"loss":{"last":0.5,"min":0.5,"max":1.5,"step":1,"count":2,"chunk_step":0}}}`},
	} {
		p, err := f.s.SearchRuns("alice", "p", projections.RunQuery{Search: "run-a", Fields: c.fields})
		if err != nil {
			t.Fatal(err)
		}
		got := string(p.Runs[0])
		if !strings.HasPrefix(got, `{"id":"a","name":"run-a","owner":"alice","state":"running","job_type":"train","group":"g1","tags":["base","unet"],"created_at":`) ||
			!strings.HasSuffix(got, c.want) {
			t.Errorf("fields %v: %s\nwant ...%s", c.fields, got, c.want)
		}
		if len(got) >= len(full.Runs[0]) && c.fields[0] != "metrics" {
			t.Errorf("fields %v: %d bytes, the full run %d", c.fields, len(got), len(full.Runs[0]))
		}
	}
}

func TestBadQueries(t *testing.T) {
	f := searchWorld(t)
	for _, s := range []string{"config.", "config.lr", "config.lr>=", "config.lr>=abc", "summary.loss=adam", "loss<1", "config.=3"} {
		if _, err := projections.ParseCond(s); err == nil {
			t.Errorf("ParseCond(%q) accepted", s)
		}
	}
	for _, q := range []projections.RunQuery{{Sort: "colour"}, {Cursor: "garbage!"}, {Limit: -1}} {
		if _, err := f.s.SearchRuns("alice", "p", q); err == nil {
			t.Errorf("query %+v accepted", q)
		}
	}
	p, _ := f.s.SearchRuns("alice", "p", projections.RunQuery{Limit: 2})
	if _, err := f.s.SearchRuns("alice", "p", projections.RunQuery{Limit: 2, Cursor: p.NextCursor, Sort: "name"}); err == nil {
		t.Error("a cursor of another sort was accepted")
	}
	if _, _, err := f.s.CountRuns("alice", "p", projections.RunQuery{}, "colour"); err == nil {
		t.Error("group by colour accepted")
	}
}

// TestPagination: every page concatenated is the whole sorted result, for
// random data with ties.
func TestPagination(t *testing.T) {
	f := openStore(t)
	rng := rand.New(rand.NewPCG(11, 12))
	want := map[string]float64{}
	for i := 0; i < 300; i++ {
		id := fmt.Sprintf("r%03d", i)
		f.add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: id}})
		if rng.IntN(5) > 0 {
			v := float64(rng.IntN(20)) // many ties
			want[id] = v
			f.add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.MustRows([]events.Row{{Step: 0, Values: map[string]events.Value{"acc": events.Value(v)}}})})
		}
	}
	all := make([]string, 0, 300)
	for i := 0; i < 300; i++ {
		all = append(all, fmt.Sprintf("r%03d", i))
	}
	sort.SliceStable(all, func(i, j int) bool {
		vi, oki := want[all[i]]
		vj, okj := want[all[j]]
		if oki != okj {
			return oki
		}
		if vi != vj {
			return vi > vj
		}
		return all[i] < all[j]
	})
	q := projections.RunQuery{Sort: "summary.acc", Desc: true, Limit: 37}
	var got []string
	for {
		p, err := f.s.SearchRuns("alice", "p", q)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 300 {
			t.Fatalf("total %d", p.Total)
		}
		got = append(got, ids(t, p)...)
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	if !slices.Equal(got, all) {
		t.Fatalf("paged order differs:\n got %v\nwant %v", got, all)
	}
}

// RunChanges lists the runs indexed after a sequence, for a query: what a
// live view needs after it last looked.
func TestRunChanges(t *testing.T) {
	f := searchWorld(t)
	// The index loads after every event: every run counts as changed for
	// a client that looked before (it cannot know better), none after.
	c, err := f.s.RunChanges("alice", "p", 1, projections.RunQuery{})
	if err != nil || c.Total != 5 || len(c.Runs) != 5 || c.Seq != f.seq {
		t.Fatalf("from seq 1: %d runs, total %d, seq %d (store at %d), %v", len(c.Runs), c.Total, c.Seq, f.seq, err)
	}
	since := c.Seq
	if c, _ := f.s.RunChanges("alice", "p", since, projections.RunQuery{}); len(c.Runs) != 0 || c.Seq != since {
		t.Fatalf("nothing changed, got %v (seq %d)", ids(t, projections.RunPage{Runs: c.Runs}), c.Seq)
	}
	f.add(events.Event{Entity: "alice", Project: "p", Run: "c", Time: t0.Add(time.Hour), Payload: events.MustRows([]events.Row{
		{Step: 5, Values: map[string]events.Value{"loss": 0.05}}})})
	f.add(events.Event{Entity: "alice", Project: "p", Run: "a", Payload: events.RunFinishedV1{State: events.StateFinished}})
	c, _ = f.s.RunChanges("alice", "p", since, projections.RunQuery{})
	if got := strings.Join(ids(t, projections.RunPage{Runs: c.Runs}), " "); got != "c a" || c.Seq != f.seq || c.Total != 5 {
		t.Fatalf("changed: %q (want c a, oldest first), seq %d total %d", got, c.Seq, c.Total)
	}
	// Filters and fields apply.
	c, _ = f.s.RunChanges("alice", "p", since, projections.RunQuery{JobType: "eval", Fields: []string{"summary.loss"}})
	if len(c.Runs) != 1 || c.Total != 2 || !strings.HasSuffix(string(c.Runs[0]), `"config":{},"summary":{"loss":0.05}}`) {
		t.Fatalf("eval runs changed: %s, total %d", c.Runs, c.Total)
	}
	// A deleted run is not listed; the total says it.
	f.add(events.Event{Entity: "alice", Project: "p", Run: "e", Payload: events.RunDeletedV1{}})
	if c, _ := f.s.RunChanges("alice", "p", c.Seq, projections.RunQuery{}); len(c.Runs) != 0 || c.Total != 4 {
		t.Fatalf("after a delete: %d runs, total %d", len(c.Runs), c.Total)
	}
}

// Groups by tag (a run under each of its tags) and by a config value, with
// aggregates of a summary metric: what the runs table's grouping shows.
func TestCountRunsByTagAndConfig(t *testing.T) {
	f := searchWorld(t)
	str := func(gs []projections.GroupCount) string {
		var b strings.Builder
		for _, g := range gs {
			fmt.Fprintf(&b, "%s:%d", g.Value, g.Count)
			if a, ok := g.Aggregates["summary.loss"]; ok {
				fmt.Fprintf(&b, "(n%d %.2f %.2f-%.2f)", a.Count, a.Mean, a.Min, a.Max)
			}
			b.WriteString(" ")
		}
		return b.String()
	}
	for _, c := range []struct{ by, want string }{
		{"tag", "base:2(n2 0.70 0.50-0.90) unet:2(n2 0.40 0.30-0.50) :1(n1 0.10 0.10-0.10) x:1 "},
		{"config.optimizer.name", ":3(n2 0.50 0.10-0.90) adam:1(n1 0.50 0.50-0.50) sgd:1(n1 0.30 0.30-0.30) "},
		{"config.optimizer.lr", ":1 0.001:1(n1 0.50 0.50-0.50) 0.01:1(n1 0.30 0.30-0.30) 0.1:1(n1 0.90 0.90-0.90) auto:1(n1 0.10 0.10-0.10) "},
	} {
		gs, total, err := f.s.CountRuns("alice", "p", projections.RunQuery{}, c.by, "summary.loss")
		if err != nil || total != 5 || str(gs) != c.want {
			t.Errorf("by %s: %q (total %d, %v), want %q", c.by, str(gs), total, err, c.want)
		}
	}
	if _, _, err := f.s.CountRuns("alice", "p", projections.RunQuery{}, "tag", "loss"); err == nil {
		t.Error("an aggregate without summary. was accepted")
	}
	if _, _, err := f.s.CountRuns("alice", "p", projections.RunQuery{}, "config."); err == nil {
		t.Error("config. without a path was accepted")
	}
}
