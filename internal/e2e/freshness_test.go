package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoppedProjectorProcessHoldsWriters: ingest and projector as separate
// processes. A projector frozen with SIGSTOP (its position stops, the log
// goes on) makes the edge hold native metric batches, then answer 429
// read_model_behind with a Retry-After, while a run start is still
// answered; once the projector has been silent for 10 s the edge stops
// waiting for it (a dead projector must not block writes for good), and
// /readyz says so.
func TestStoppedProjectorProcessHoldsWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	sys := mustProcesses(t)
	admin := api{t, sys.WriteURL, adminKey}
	admin.must(201, "POST", "/api/v1/projects", map[string]string{"name": "fresh"}, nil)
	var run struct {
		RunID string `json:"run_id"`
	}
	admin.must(201, "POST", "/api/v1/projects/admin/fresh/runs", map[string]string{"name": "r"}, &run)
	step := 0
	logBatch := func() (int, apiError) {
		rows := make([]map[string]any, 200)
		for i := range rows {
			v := map[string]float64{}
			for m := range 20 {
				v[fmt.Sprintf("m%02d", m)] = float64(step + m)
			}
			rows[i] = map[string]any{"step": step, "values": v}
			step++
		}
		var e apiError
		return admin.do("POST", "/api/v1/projects/admin/fresh/runs/"+run.RunID+"/log", map[string]any{"rows": rows}, &e), e
	}
	waitReadyz(t, sys.WriteURL, "projectors waited for 1,")

	if err := sys.projector.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sys.projector.cmd.Process.Signal(syscall.SIGCONT) })
	for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, e := logBatch()
		if st == 429 && e.Error.Code == "read_model_behind" {
			break
		}
		if st != 202 && (st != 429 || e.Error.Code != "rate_limited") {
			t.Fatalf("a batch while the projector is stopped: %d %+v", st, e)
		}
		if time.Now().After(deadline) {
			t.Fatal("no batch refused with read_model_behind while the projector was stopped")
		}
	}
	admin.must(201, "POST", "/api/v1/projects/admin/fresh/runs", map[string]string{"name": "started while held"}, nil)

	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, _ := logBatch(); st == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batches still refused 40 s after the projector stopped")
		}
	}
	waitReadyz(t, sys.WriteURL, "projectors waited for 0, ignored 1)")
}

// waitReadyz waits until the edge's /readyz says want.
func waitReadyz(t *testing.T, base, want string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if last = string(b); strings.Contains(last, want) {
			return
		}
	}
	t.Fatalf("/readyz never said %q: last %q", want, last)
}
