package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestBadInput: every kind of bad request gets a clear error, and nothing
// already stored changes.
func TestBadInput(t *testing.T) {
	sys := mustAllInOne(t)
	admin := api{t, sys.WriteURL, adminKey}
	alice := api{t, sys.WriteURL, newUser(t, admin, "alice", "alice@example.com")}
	mallory := api{t, sys.WriteURL, newUser(t, admin, "mallory", "")}
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "proj"}, nil)
	const proj = "/api/v1/projects/alice/proj"
	var started struct {
		Run string `json:"run_id"`
		Seq uint64 `json:"seq"`
	}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "r"}, &started)
	alice.must(202, "POST", proj+"/runs/"+started.Run+"/log", map[string]any{"rows": []map[string]any{
		{"step": 0, "values": map[string]any{"loss": 0.5}},
		{"step": 1, "values": map[string]any{"loss": "NaN", "grad": "Infinity", "neg": "-Infinity"}},
	}}, nil)
	var done struct {
		Run string `json:"run_id"`
		Seq uint64 `json:"seq"`
	}
	alice.must(200, "POST", proj+"/runs/"+started.Run+"/finish", map[string]any{"exit_code": 0}, &done)
	var finished struct {
		Seq uint64 `json:"seq"`
	}
	alice.must(201, "POST", proj+"/runs", map[string]any{"name": "open"}, &finished)

	snapshot := func() string {
		var runs, hist json.RawMessage
		alice.must(200, "GET", fmt.Sprintf("%s/runs?min_seq=%d", proj, finished.Seq), nil, &runs)
		alice.must(200, "GET", proj+"/runs/"+started.Run+"/history", nil, &hist)
		return string(runs) + string(hist)
	}
	before := snapshot()

	// Non-finite values are stored faithfully.
	var pts []struct {
		Step  int64 `json:"step"`
		Value any   `json:"value"`
	}
	for metric, want := range map[string]string{"loss": "NaN", "grad": "Infinity", "neg": "-Infinity"} {
		alice.must(200, "GET", proj+"/runs/"+started.Run+"/history?metric="+metric+"&min_step=1", nil, &pts)
		if len(pts) != 1 || pts[0].Value != want {
			t.Errorf("%s stored as %+v, want one point %s", metric, pts, want)
		}
	}

	big := strings.Repeat("x", 5<<20)
	cases := []struct {
		name   string
		who    api
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{"project name with a colon (dots are allowed)", alice, "POST", "/api/v1/projects", map[string]string{"name": "a:b"}, 400, "invalid"},
		{"project name with a wildcard", alice, "POST", "/api/v1/projects", map[string]string{"name": "*"}, 400, "invalid"},
		{"entity with capitals", alice, "POST", "/api/v1/projects", map[string]string{"entity": "Alice", "name": "p"}, 400, "invalid"},
		{"unknown entity", alice, "POST", "/api/v1/projects", map[string]string{"entity": "ghost", "name": "p"}, 404, "unknown_entity"},
		{"unknown project", alice, "POST", "/api/v1/projects/alice/nope/runs", map[string]any{}, 404, "project_not_found"},
		{"invalid run id in path", alice, "POST", proj + "/runs/a:b/log", map[string]any{"rows": []any{}}, 400, "invalid"},
		{"invalid run id in body", alice, "POST", proj + "/runs", map[string]any{"id": "has space"}, 400, "invalid"},
		{"run start by a non-member", mallory, "POST", proj + "/runs", map[string]any{"name": "x"}, 404, "project_not_found"},
		{"log to a non-member's view", mallory, "POST", proj + "/runs/" + started.Run + "/log", map[string]any{"rows": []map[string]any{{"step": 5, "values": map[string]any{"x": 1}}}}, 404, "project_not_found"},
		{"log to an unknown run", alice, "POST", proj + "/runs/nope/log", map[string]any{"rows": []map[string]any{{"step": 0, "values": map[string]any{"x": 1}}}}, 404, "run_not_found"},
		{"log to a finished run", alice, "POST", proj + "/runs/" + started.Run + "/log", map[string]any{"rows": []map[string]any{{"step": 9, "values": map[string]any{"x": 1}}}}, 409, "run_finished"},
		{"finish a finished run", alice, "POST", proj + "/runs/" + started.Run + "/finish", map[string]any{}, 409, "run_finished"},
		{"malformed JSON", alice, "POST", proj + "/runs", []byte(`{"name": "x"`), 400, "invalid_json"},
		{"wrong JSON type", alice, "POST", proj + "/runs", []byte(`{"tags": "x"}`), 400, "invalid_json"},
		{"metric value not a number", alice, "POST", proj + "/runs/" + started.Run + "/log", []byte(`{"rows":[{"step":9,"values":{"x":"high"}}]}`), 400, "invalid_json"},
		{"empty batch", alice, "POST", proj + "/runs/" + started.Run + "/log", map[string]any{"rows": []any{}}, 400, "invalid"},
		{"body over the size limit", alice, "POST", proj + "/runs", map[string]any{"notes": big}, 413, "too_large"},
		{"config too large", alice, "POST", proj + "/runs", map[string]any{"config": map[string]string{"blob": big[:300<<10]}}, 400, "invalid"},
		{"config not an object", alice, "POST", proj + "/runs", map[string]any{"config": []int{1}}, 400, "invalid"},
		{"no API key", api{t, sys.WriteURL, ""}, "POST", proj + "/runs", map[string]any{}, 401, "unauthenticated"},
		{"wrong API key", api{t, sys.WriteURL, "lb-nope"}, "POST", proj + "/runs", map[string]any{}, 401, "unauthenticated"},
		{"read with a wrong key", api{t, sys.ReadURL, "lb-nope"}, "GET", proj + "/runs", nil, 401, "unauthenticated"},
		{"read with a bad step", alice, "GET", proj + "/runs/" + started.Run + "/history?min_step=x", nil, 400, "invalid"},
		{"read of an unknown run", alice, "GET", proj + "/runs/nope", nil, 404, "run_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			st := tc.who.do(tc.method, tc.path, tc.body, &e)
			if st != tc.status || e.Error.Code != tc.code {
				t.Errorf("%s %s: %d %+v, want %d %s", tc.method, tc.path, st, e, tc.status, tc.code)
			}
			if len(e.Error.Message) < 10 {
				t.Errorf("message %q does not explain", e.Error.Message)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Errorf("bad input changed stored data:\nbefore %s\nafter  %s", before, after)
	}
}
