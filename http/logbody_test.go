package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// post sends a raw body with a content type and returns the status and
// the error code of the answer, if any.
func (w *writeSide) post(key, path, contentType string, body []byte) (int, string) {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code string }
	}
	_ = json.Unmarshal(data, &e)
	return resp.StatusCode, e.Error.Code
}

// TestLogBodies: the log API takes the JSON rows (fast path and
// encoding/json's) and the binary columns, and refuses what is not a batch
// with its error code.
func TestLogBodies(t *testing.T) {
	w := mustWriteSide(t, time.Minute)
	bob := w.user("bob")
	w.must(201, bob, "POST", "/api/v1/projects", map[string]string{"name": "p"}, nil)
	w.must(201, bob, "POST", "/api/v1/projects/bob/p/runs", map[string]any{"id": "r1"}, nil)
	const log = "/api/v1/projects/bob/p/runs/r1/log"
	cols := events.MustRows([]events.Row{{Step: 2, Time: 5, Values: map[string]events.Value{"loss": 1}}, {Step: 3, Time: 6, Values: map[string]events.Value{"acc": 1}}})
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"JSON rows, no time", "application/json", `{"rows":[{"step":0,"values":{"loss":1}},{"step":1,"values":{"loss":"NaN","ok":true}}]}`, 202, ""},
		{"binary columns", events.ColumnsMediaType, string(cols.AppendBody(nil)), 202, ""},
		{"binary columns, a row without a time (accepted; stamped as events.TestFillTimes checks)", events.ColumnsMediaType, string(events.MustRows([]events.Row{{Step: 4, Values: map[string]events.Value{"loss": 2}}}).AppendBody(nil)), 202, ""},
		{"binary columns, truncated", events.ColumnsMediaType, string(cols.AppendBody(nil)[:20]), 400, "invalid_columns"},
		{"steps that do not increase", "application/json", `{"rows":[{"step":5,"values":{"loss":1}},{"step":5,"values":{"loss":1}}]}`, 400, "invalid"},
		{"a reserved key (the policy's check)", "application/json", `{"rows":[{"step":5,"values":{"_loss":1}}]}`, 400, "invalid"},
		{"not JSON", "application/json", `{"rows":[`, 400, "invalid_json"},
		{"escapes (encoding/json)", "application/json", `{"rows":[{"values":{"l\u006fss":2},"step":6}]}`, 202, ""},
	} {
		if status, code := w.post(bob, log, c.contentType, []byte(c.body)); status != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, code, c.status, c.code)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for w.run("bob", "p", "r1").LastStep != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("last step %d, want 6", w.run("bob", "p", "r1").LastStep)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Decided after the batches are appended: the test ends with no
	// append in flight.
	w.must(200, bob, "POST", "/api/v1/projects/bob/p/runs/r1/finish", map[string]any{}, nil)
}
