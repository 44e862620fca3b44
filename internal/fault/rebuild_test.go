package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbook/logbook/query"
)

// TestRebuildLive: the all-in-one binary rebuilds its read model from the
// CLI while metrics are written and runs are read without a pause: no read
// fails during the switch, the rebuilt read model matches a replay of the
// log, and time travel answers the project as it was.
func TestRebuildLive(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: starts real processes")
	}
	bin := mustBinaries(t)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"LOGBOOK_ADMIN_API_KEY=" + adminKey, "LOGBOOK_LOG_LEVEL=warn"}
	lb := startProc(t, "logbook", env, filepath.Join(bin, "logbook"), "-data.dir", dir, "-http.addr", addr, "-nats.addr", "127.0.0.1:0")
	s := &sys{t: t, bin: bin, dir: dir, ingestURL: "http://" + addr, env: append(env, "LOGBOOK_URL=http://"+addr, "LOGBOOK_API_KEY="+adminKey)}
	s.waitIngest()
	_ = lb
	alice := s.user("alice")
	s.must(alice, "POST", "/api/v1/projects", map[string]string{"entity": "alice", "name": "p"})
	run := s.must(alice, "POST", "/api/v1/projects/alice/p/runs", map[string]string{"name": "r"})["run_id"].(string)
	seqBefore := uint64(s.must(alice, "POST", "/api/v1/projects/alice/p/runs", map[string]string{"name": "later"})["seq"].(float64))

	logBatch := func(step int) {
		rows := make([]map[string]any, 50)
		for i := range rows {
			rows[i] = map[string]any{"step": step + i, "values": map[string]float64{"loss": float64(step + i)}}
		}
		for {
			st, out := s.call(alice, "POST", "/api/v1/projects/alice/p/runs/"+run+"/log", map[string]any{"rows": rows})
			if st == http.StatusTooManyRequests { // the edge's per-key rate limit
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if st/100 != 2 {
				t.Errorf("log: %d %v", st, out)
			}
			return
		}
	}
	for i := 0; i < 400; i++ {
		logBatch(i * 50)
	}

	// Writers and readers run through the rebuild.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reads, readErrors atomic.Int64
	var lastErr atomic.Value
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 400; ctx.Err() == nil; i++ {
			logBatch(i * 50)
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequest("GET", s.ingestURL+"/api/v1/projects/alice/p/runs/"+run, nil)
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := http.DefaultClient.Do(req)
			reads.Add(1)
			if err != nil {
				readErrors.Add(1)
				lastErr.Store(err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				reads.Add(-1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if resp.StatusCode != 200 {
				readErrors.Add(1)
				lastErr.Store(fmt.Sprintf("%d %s", resp.StatusCode, b))
			}
		}
	}()
	cmd := exec.Command(filepath.Join(bin, "logbook"), "rebuild")
	cmd.Env = append(os.Environ(), s.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("logbook rebuild: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var st query.ReadModelStatus
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || st.Digest == nil {
		t.Fatalf("logbook rebuild printed %q: %v", stdout.String(), err)
	}
	if !strings.HasSuffix(st.Dir, "readmodel.new") {
		t.Errorf("rebuilt into %s, want readmodel.new", st.Dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "readmodel")); !os.IsNotExist(err) {
		t.Errorf("the replaced read model is still there: %v", err)
	}
	if !strings.Contains(stderr.String(), "events") {
		t.Errorf("no progress shown: %q", stderr.String())
	}
	if n := readErrors.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed during the rebuild, last: %v", n, reads.Load(), lastErr.Load())
	}
	var v query.ReadModelStatus
	if err := json.Unmarshal(s.runCLI("logbook", "digest", "-verify"), &v); err != nil || v.Verify == nil || !v.Verify.Equal {
		t.Fatalf("digest -verify after a live rebuild: %+v %v", v, err)
	}

	// Time travel: before "later" was started there was one run.
	st2, out := s.call(alice, "GET", fmt.Sprintf("/api/v1/projects/alice/p/asof?seq=%d", seqBefore-1), nil)
	if st2 != 200 {
		t.Fatalf("asof: %d %v", st2, out)
	}
	if runs := out["runs"].([]any); len(runs) != 1 {
		t.Fatalf("asof seq %d: %d runs, want 1: %v", seqBefore-1, len(runs), out)
	}
	t.Logf("rebuilt live at seq %d (%d keys), %d reads during it, none failed", st.Digest.Seq, st.Digest.Keys, reads.Load())

	// A restart opens the rebuilt read model (moved back to readmodel).
	lb.stop()
	lb.start()
	s.waitIngest()
	if _, err := os.Stat(filepath.Join(dir, "readmodel")); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}
