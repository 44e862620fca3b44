package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type runEvent struct {
	ID   string
	Data struct {
		Seq   uint64 `json:"seq"`
		Total int    `json:"total"`
		Runs  []struct {
			ID      string         `json:"id"`
			State   string         `json:"state"`
			Summary map[string]any `json:"summary"`
			Metrics map[string]any `json:"metrics"`
		} `json:"runs"`
	}
}

// openEvents opens the run-events stream and answers a function that
// reads the next "runs" event (keep-alive comments skipped).
func openEvents(t *testing.T, url, key, lastID string) (func(time.Duration) (runEvent, bool), func()) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs := make(chan runEvent, 16)
	go func() {
		defer close(evs)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		var ev runEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &ev.Data); err != nil {
					t.Errorf("event data %q: %v", line, err)
				}
			case line == "" && ev.ID != "":
				evs <- ev
				ev = runEvent{}
			}
		}
	}()
	next := func(d time.Duration) (runEvent, bool) {
		select {
		case ev, ok := <-evs:
			return ev, ok
		case <-time.After(d):
			return runEvent{}, false
		}
	}
	return next, func() { resp.Body.Close() }
}

// The web UI's live view: a run that logs is on the stream within a
// second or two, with only the fields asked for; a reconnect with
// Last-Event-ID gets what it missed.
func TestRunEventsStream(t *testing.T) {
	runEventsScenario(t, mustAllInOne(t))
}

// The same through nats-server, ingest, projector and query as separate
// processes: the stream's long-poll reads go through the NATS read service.
func TestRunEventsStreamProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	runEventsScenario(t, mustProcesses(t))
}

func runEventsScenario(t *testing.T, sys system) {
	admin := api{t, sys.WriteURL, adminKey}
	reader := api{t, sys.ReadURL, adminKey}
	admin.must(201, "POST", "/api/v1/projects", map[string]string{"entity": "admin", "name": "live"}, nil)
	var run struct {
		RunID string `json:"run_id"`
		Seq   uint64 `json:"seq"`
	}
	admin.must(201, "POST", "/api/v1/projects/admin/live/runs", map[string]any{"name": "r", "job_type": "train"}, &run)
	reader.must(200, "GET", "/api/v1/projects/admin/live?min_seq="+strconv.FormatUint(run.Seq, 10), nil, nil)
	url := sys.ReadURL + "/api/v1/projects/admin/live/events?job_type=train&fields=summary.loss"

	next, stop := openEvents(t, url, adminKey, "")
	first, ok := next(5 * time.Second)
	if !ok || first.Data.Total != 1 || len(first.Data.Runs) != 0 || first.ID != strconv.FormatUint(first.Data.Seq, 10) {
		t.Fatalf("first event %+v (ok %v)", first, ok)
	}
	start := time.Now()
	admin.must(202, "POST", "/api/v1/projects/admin/live/runs/"+run.RunID+"/log",
		map[string]any{"rows": []map[string]any{{"step": 0, "values": map[string]any{"loss": 0.5, "acc": 0.1}}}}, nil)
	ev, ok := next(5 * time.Second)
	if !ok || len(ev.Data.Runs) != 1 || ev.Data.Runs[0].ID != run.RunID || ev.Data.Runs[0].Summary["loss"] != 0.5 {
		t.Fatalf("after a log: %+v (ok %v)", ev, ok)
	}
	if ev.Data.Runs[0].Metrics != nil || len(ev.Data.Runs[0].Summary) != 1 {
		t.Fatalf("fields= not applied: %+v", ev.Data.Runs[0])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the change took %v to arrive", d)
	}
	t.Logf("log -> event: %v", time.Since(start))
	stop()

	// Missed while disconnected: a finish; the reconnect gets it at once.
	admin.must(200, "POST", "/api/v1/projects/admin/live/runs/"+run.RunID+"/finish", map[string]any{"exit_code": 0}, nil)
	time.Sleep(200 * time.Millisecond)
	next, stop = openEvents(t, url, adminKey, ev.ID)
	defer stop()
	ev2, ok := next(5 * time.Second)
	if !ok || len(ev2.Data.Runs) != 1 || ev2.Data.Runs[0].State != "finished" || ev2.Data.Seq <= ev.Data.Seq {
		t.Fatalf("resumed after %s: %+v (ok %v)", ev.ID, ev2, ok)
	}
	// A run started elsewhere in the project, outside the filter, is not sent.
	admin.must(201, "POST", "/api/v1/projects/admin/live/runs", map[string]any{"name": "other", "job_type": "eval"}, nil)
	if ev3, ok := next(1500 * time.Millisecond); ok {
		t.Fatalf("an eval run reached a job_type=train stream: %+v", ev3)
	}

	// Polling clients: once=1 answers JSON at once.
	var once struct {
		Seq   uint64            `json:"seq"`
		Total int               `json:"total"`
		Runs  []json.RawMessage `json:"runs"`
	}
	reader.must(200, "GET", "/api/v1/projects/admin/live/events?once=1&since="+ev.ID, nil, &once)
	if once.Total != 2 || len(once.Runs) != 2 {
		t.Fatalf("once: %+v", once)
	}
	if st := (api{t, sys.ReadURL, "lb-nope"}).do("GET", "/api/v1/projects/admin/live/events", nil, nil); st != 401 {
		t.Fatalf("a bad key: %d", st)
	}
	if st := reader.do("GET", "/api/v1/projects/admin/live/events?since=x", nil, nil); st != 400 {
		t.Fatalf("since=x: %d", st)
	}
}
