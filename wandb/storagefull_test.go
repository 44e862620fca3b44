package wandb_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
	"github.com/logbook/logbook/wandb"
)

// fullWriter is a write side whose log cannot store anything.
type fullWriter struct{ ready chan struct{} }

var errFull = errs.New(errs.StorageFull, "storage_full", "the event log's storage is full")

func (f fullWriter) Ready() <-chan struct{} { return f.ready }
func (fullWriter) Authenticate(string) (*policy.User, error) {
	return &policy.User{Username: "alice"}, nil
}
func (fullWriter) Submit(context.Context, events.Event, ingest.Mode) (ingest.Outcome, error) {
	return ingest.Outcome{}, errFull
}
func (fullWriter) Check(events.Event) policy.Decision { return policy.Decision{} }
func (fullWriter) LogRows(context.Context, string, string, string, string, string, events.MetricsLoggedV2) (ingest.Outcome, error) {
	return ingest.Outcome{}, errFull
}
func (fullWriter) Heartbeat(context.Context, string, string, string, string, string) (ingest.Outcome, error) {
	return ingest.Outcome{}, errFull
}
func (fullWriter) Run(string, string, string) ingest.RunInfo {
	return ingest.RunInfo{ProjectExists: true, Exists: true, State: events.StateRunning, Owner: "alice"}
}
func (fullWriter) Teams(string) []string                { return nil }
func (fullWriter) View(func(*policy.State))             {}
func (fullWriter) KeyRef(string) (string, string, bool) { return "alice", "k1", true }
func (fullWriter) KeyActive(string, string) bool        { return true }
func (fullWriter) Read(context.Context, query.Request) (json.RawMessage, error) {
	return json.RawMessage(`{"id":"r1","entity":"alice","project":"p","last_step":-1}`), nil
}

// TestWandbStorageFullIsRetryable: when the log cannot store a write, the
// W&B endpoints answer 507 storage_full (a 5xx, which W&B clients retry),
// GraphQL included, instead of a GraphQL error in a 200 that makes the
// client drop the operation.
func TestWandbStorageFullIsRetryable(t *testing.T) {
	w := fullWriter{ready: make(chan struct{})}
	close(w.ready)
	mux := http.NewServeMux()
	wandb.New(w, w, nil, nil).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", basic("lb-whatever"))
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
	q, _ := json.Marshal(map[string]any{"query": upsertQuery, "operationName": "UpsertBucket",
		"variables": upsertVars(map[string]any{"name": "r1", "project": "p", "entity": "alice", "notes": "x"})})
	if st, body := post("/graphql", string(q)); st != 507 || !strings.Contains(body, "storage_full") {
		t.Errorf("UpsertBucket with the log full: %d %s, want 507 storage_full", st, body)
	}
	if st, body := post("/files/alice/p/r1/file_stream", `{"files":{"wandb-history.jsonl":{"offset":0,"content":["{\"_step\":0,\"loss\":1}"]}}}`); st != 507 || !strings.Contains(body, "storage_full") {
		t.Errorf("file_stream with the log full: %d %s, want 507 storage_full", st, body)
	}
}
