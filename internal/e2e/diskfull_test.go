package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/app"
)

// mountTmpfs mounts a tmpfs of size (e.g. "64m") on a fresh directory and
// unmounts it at cleanup. Without the right to mount it skips, except under
// CI, where it fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if ci() {
			t.Fatalf("mount a tmpfs (CI runs as root): %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (run as root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull: on a full disk a write is refused at once with 507
// storage_full, reads go on, writes resume by themselves when space comes
// back, every acknowledged row becomes readable without a restart, and the
// all-in-one shuts down promptly.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a disk")
	}
	disk := mountTmpfs(t, "64m")
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 24<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := mustAllInOneWith(t, func(c *app.AllInOneConfig) { c.DataDir = filepath.Join(disk, "data") })
	admin := api{t, sys.WriteURL, adminKey}
	admin.must(201, "POST", "/api/v1/projects", map[string]string{"name": "full"}, nil)
	var run struct {
		Run string `json:"run_id"`
	}
	admin.must(201, "POST", "/api/v1/projects/admin/full/runs", map[string]any{"name": "r"}, &run)
	runPath := "/api/v1/projects/admin/full/runs/" + run.Run

	step := 0
	logBatch := func() (int, apiError, time.Duration) {
		rows := make([]map[string]any, 500)
		for i := range rows {
			vals := map[string]any{"loss": 1 / float64(step+1)}
			for m := range 12 {
				vals[fmt.Sprintf("metric_%02d", m)] = float64(step*m) + 0.123456789
			}
			rows[i] = map[string]any{"step": step, "values": vals}
			step++
		}
		var e apiError
		var raw json.RawMessage
		start := time.Now()
		st := admin.do("POST", runPath+"/log", map[string]any{"rows": rows}, &raw)
		took := time.Since(start)
		if st != 202 {
			_ = json.Unmarshal(raw, &e)
			step -= len(rows) // not stored: the next batch takes these steps
		}
		return st, e, took
	}
	// Log until writes are refused for good: the guard lets JetStream take
	// half of the free space above the reserve at each check, so the
	// first refusals may be followed by accepted writes until the disk is
	// at its reserve. Every refusal must be 507 storage_full, fast.
	acked, refusedInARow := 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	for refusedInARow < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the disk did not fill within 3 minutes (%d rows logged)", acked)
		}
		st, e, took := logBatch()
		if st == 202 {
			acked += 500
			refusedInARow = 0
			continue
		}
		if st != 507 || e.Error.Code != "storage_full" {
			t.Fatalf("after %d rows: a refused write answered %d %q (%s), want 507 storage_full", acked, st, e.Error.Code, e.Error.Message)
		}
		if took > 5*time.Second {
			t.Fatalf("a refused write took %v, want under 5s", took)
		}
		if refusedInARow == 0 {
			t.Logf("refused after %d rows, in %v", acked, took)
		}
		refusedInARow++
		// While full, reads answer.
		if st := admin.do("GET", runPath+"/history?metric=loss&limit=1", nil, nil); st != 200 {
			t.Fatalf("a read while the disk is full answered %d", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("full after %d rows", acked)
	// The log says what happened (not only "context canceled").
	if !strings.Contains(sys.logs.String(), "the disk of the data directory is full") {
		t.Error("the log does not say that the disk is full")
	}

	// Space comes back: writes resume within 10s without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		st, e, _ := logBatch()
		if st == 202 {
			acked += 500
			break
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("writes did not resume within 10s of space coming back: %d %q %s", st, e.Error.Code, e.Error.Message)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("writes resumed %v after space came back", time.Since(freed).Round(time.Millisecond))
	for range 4 {
		if st, e, _ := logBatch(); st != 202 {
			t.Fatalf("a write after space came back answered %d %q", st, e.Error.Code)
		}
		acked += 500
	}

	// Every acknowledged row becomes readable.
	var readable int
	deadline = time.Now().Add(30 * time.Second)
	for {
		var pts []json.RawMessage
		admin.must(200, "GET", runPath+"/history?metric=loss", nil, &pts)
		if readable = len(pts); readable == acked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged rows readable after 30s", readable, acked)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := sys.alive(); err != nil {
		t.Fatal(err)
	}

	// A clean shutdown within a bound.
	stopped := make(chan struct{})
	go func() { sys.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the all-in-one did not stop within 30s")
	}
}
