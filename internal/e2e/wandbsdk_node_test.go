package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jsScript runs the real @wandb/sdk: init, LB_STEPS log calls, finish.
const jsScript = `
const wandb = require('@wandb/sdk').default;
(async () => {
  const run = await wandb.init({
    entity: process.env.LB_ENTITY, project: process.env.LB_PROJECT, name: process.env.LB_NAME,
    job_type: 'train', tags: ['js'],
    config: {lr: 0.01, layers: [64, 32], opt: {name: 'adam'}},
  });
  console.log('RUN ' + JSON.stringify({id: run.id, name: run.name, entity: run.entity, project: run.project}));
  const n = Number(process.env.LB_STEPS);
  for (let i = 0; i < n; i++) {
    wandb.log({loss: 1 / (i + 1), acc: i / n, train: {grad_norm: i * 0.5}, note: 'text is skipped'});
  }
  await wandb.finish(Number(process.env.LB_EXIT || 0));
})().catch((e) => { console.error('FAILED', e && e.message ? e.message : e); process.exit(1); });
`

type jsResult struct {
	ID, Name, Entity, Project string
	Out                       string
	Err                       error
}

// runJS runs the script with node against base with key.
func runJS(t *testing.T, nodeModules, base, key, entity, project, name string, steps, exit int) jsResult {
	t.Helper()
	script := filepath.Join(t.TempDir(), "run.cjs")
	if err := os.WriteFile(script, []byte(jsScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodeModules, "WANDB_BASE_URL="+base, "WANDB_API_KEY="+key,
		"LB_ENTITY="+entity, "LB_PROJECT="+project, "LB_NAME="+name, fmt.Sprintf("LB_STEPS=%d", steps), fmt.Sprintf("LB_EXIT=%d", exit),
		"HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node did not finish within 90s:\n%s", out.String())
	}
	res := jsResult{Out: out.String(), Err: err}
	for _, line := range strings.Split(res.Out, "\n") {
		if rest, ok := strings.CutPrefix(line, "RUN "); ok {
			var v struct{ ID, Name, Entity, Project string }
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				t.Fatalf("undecodable RUN line %q", line)
			}
			res.ID, res.Name, res.Entity, res.Project = v.ID, v.Name, v.Entity, v.Project
		}
	}
	return res
}

// jsSDK returns the node_modules directory with @wandb/sdk, or skips (fails
// under CI) when node or the package is missing.
func jsSDK(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		msg := what + "; run `npm ci` in compat/wandb-js (scripts/test does)"
		if ci() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing("node is not installed")
	}
	dir := filepath.Join(repoRoot(t), "compat", "wandb-js", "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "@wandb", "sdk", "package.json")); err != nil {
		missing("@wandb/sdk is not installed")
	}
	return dir
}

// TestWandbJSSDK drives the real W&B JavaScript SDK (@wandb/sdk 0.5.1)
// against the all-in-one Logbook and checks the result through Logbook's
// own query API.
func TestWandbJSSDK(t *testing.T) {
	nodeModules := jsSDK(t)
	sys := mustAllInOne(t)
	admin := api{t, sys.WriteURL, adminKey}
	aliceKey := newUser(t, admin, "alice", "alice@example.com")
	vicKey := newUser(t, admin, "vic", "vic@example.com")
	alice := api{t, sys.WriteURL, aliceKey}
	alice.must(201, "POST", "/api/v1/projects", map[string]string{"name": "js-compat"}, nil)
	alice.must(200, "POST", "/api/v1/projects/alice/js-compat/members", map[string]string{"username": "vic", "role": "viewer"}, nil)
	const proj = "/api/v1/projects/alice/js-compat"

	// waitRun polls until the run's state is want (the read model follows
	// the log moments after the write).
	waitRun := func(id, want string) runView {
		t.Helper()
		var rv runView
		for deadline := time.Now().Add(15 * time.Second); ; {
			alice.must(200, "GET", proj+"/runs/"+id, nil, &rv)
			if rv.State == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rv.State != want {
			t.Fatalf("run %s is %q, want %q", id, rv.State, want)
		}
		return rv
	}

	// 1. init with entity, project, name and config; 200 log calls; finish.
	// The base URL has a trailing slash, which makes the SDK post to
	// "//graphql".
	r1 := runJS(t, nodeModules, sys.WriteURL+"/", aliceKey, "alice", "js-compat", "js-run", 200, 0)
	if r1.Err != nil {
		t.Fatalf("node failed: %v\n%s", r1.Err, r1.Out)
	}
	if r1.Name != "js-run" || r1.Entity != "alice" || r1.Project != "js-compat" || r1.ID == "" {
		t.Fatalf("run as the SDK sees it: %+v", r1)
	}
	rv := waitRun(r1.ID, "finished")
	if rv.Name != "js-run" || rv.Owner != "alice" || rv.ExitCode == nil || *rv.ExitCode != 0 {
		t.Errorf("run = %+v", rv)
	}
	wantCfg := map[string]any{"lr": 0.01, "layers": []any{64.0, 32.0}, "opt": map[string]any{"name": "adam"}}
	if fmt.Sprint(rv.Config) != fmt.Sprint(wantCfg) {
		t.Errorf("config = %v, want %v", rv.Config, wantCfg)
	}
	var hist []historyRow
	alice.must(200, "GET", proj+"/runs/"+r1.ID+"/history", nil, &hist)
	if len(hist) != 200 {
		t.Fatalf("history has %d rows, want 200", len(hist))
	}
	for i, row := range hist {
		if row.Step != int64(i) || math.Abs(row.Values["loss"]-1/float64(i+1)) > 1e-12 || row.Values["train/grad_norm"] != float64(i)*0.5 {
			t.Fatalf("row %d = %+v", i, row)
		}
		if _, ok := row.Values["note"]; ok {
			t.Fatalf("row %d kept a text value: %+v", i, row)
		}
	}
	if math.Abs(rv.Summary["loss"]-1.0/200) > 1e-12 || rv.Summary["acc"] != 199.0/200 || rv.Summary["train/grad_norm"] != 99.5 {
		t.Errorf("summary = %v", rv.Summary)
	}
	for k := range rv.Summary {
		if strings.HasPrefix(k, "_") {
			t.Errorf("summary holds W&B bookkeeping key %q", k)
		}
	}

	// 2. A second run with the same name is named js-run-2. No entity: the
	// SDK takes the Viewer's entity, alice.
	r2 := runJS(t, nodeModules, sys.WriteURL, aliceKey, "", "js-compat", "js-run", 5, 0)
	if r2.Err != nil {
		t.Fatalf("node failed: %v\n%s", r2.Err, r2.Out)
	}
	if r2.Name != "js-run-2" || r2.ID == r1.ID || r2.Entity != "alice" {
		t.Errorf("second run = %+v, want name js-run-2", r2)
	}
	waitRun(r2.ID, "finished")

	// 3. finish(3) leaves the run failed, exit code 3.
	r3 := runJS(t, nodeModules, sys.WriteURL, aliceKey, "alice", "js-compat", "js-fails", 3, 3)
	if r3.Err != nil {
		t.Fatalf("node failed: %v\n%s", r3.Err, r3.Out)
	}
	if rv := waitRun(r3.ID, "failed"); rv.ExitCode == nil || *rv.ExitCode != 3 {
		t.Errorf("failed run = %+v", rv)
	}

	// 4. A Viewer's key makes init fail, saying why.
	r4 := runJS(t, nodeModules, sys.WriteURL, vicKey, "alice", "js-compat", "vic-run", 3, 0)
	if r4.Err == nil {
		t.Fatalf("a Viewer's init succeeded:\n%s", r4.Out)
	}
	if !strings.Contains(r4.Out, "a Viewer may not start a run") {
		t.Errorf("the failed init does not say why:\n%s", r4.Out)
	}
	var runs []runView
	alice.must(200, "GET", proj+"/runs", nil, &runs)
	if len(runs) != 3 {
		t.Errorf("project has %d runs, want 3: %+v", len(runs), runs)
	}
}
