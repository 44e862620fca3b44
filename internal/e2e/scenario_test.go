package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/logbook/logbook/client"
	"github.com/logbook/logbook/query"
)

type runView struct {
	ID       string             `json:"id"`
	Name     string             `json:"name"`
	Owner    string             `json:"owner"`
	State    string             `json:"state"`
	JobType  string             `json:"job_type"`
	Config   map[string]any     `json:"config"`
	Tags     []string           `json:"tags"`
	Summary  map[string]float64 `json:"summary"`
	ExitCode *int               `json:"exit_code"`
}

type historyRow struct {
	Step   int64              `json:"step"`
	Values map[string]float64 `json:"values"`
}

// TestSharedProjectScenario runs the shared-project scenario against the
// all-in-one Logbook in this process.
func TestSharedProjectScenario(t *testing.T) {
	runScenario(t, mustAllInOne(t))
}

// runScenario is the scenario of the core-loop issue, step by step, as the
// users would do it.
func runScenario(t *testing.T, sys system) {
	ctx := context.Background()
	admin := api{t, sys.WriteURL, adminKey}
	aliceKey := newUser(t, admin, "alice", "alice@example.com")
	bobKey := newUser(t, admin, "bob", "bob@example.com")
	carolKey := newUser(t, admin, "carol", "carol@example.com")
	malloryKey := newUser(t, admin, "mallory", "")
	write := func(key string) api { return api{t, sys.WriteURL, key} }
	read := func(key string) api { return api{t, sys.ReadURL, key} }

	// 1. Alice belongs to team your-team-name and creates the project.
	admin.must(201, "POST", "/api/v1/teams", map[string]string{"name": "your-team-name"}, nil)
	admin.must(201, "POST", "/api/v1/teams/your-team-name/members", map[string]string{"username": "alice", "role": "member"}, nil)
	write(aliceKey).must(201, "POST", "/api/v1/projects", map[string]string{"entity": "your-team-name", "name": "awesome-segmentation"}, nil)
	const proj = "/api/v1/projects/your-team-name/awesome-segmentation"

	// 2. Bob by username as Member, Carol by email as Viewer.
	write(aliceKey).must(200, "POST", proj+"/members", map[string]string{"username": "bob", "role": "member"}, nil)
	var inv struct {
		Seq uint64 `json:"seq"`
	}
	write(aliceKey).must(200, "POST", proj+"/members", map[string]string{"email": "carol@example.com", "role": "viewer"}, &inv)
	var members []query.Member
	read(aliceKey).must(200, "GET", fmt.Sprintf("%s/members?min_seq=%d", proj, inv.Seq), nil, &members)
	wantRoles := map[string]string{"alice": "admin", "bob": "member", "carol": "viewer"}
	if len(members) != len(wantRoles) {
		t.Fatalf("members = %+v, want %v", members, wantRoles)
	}
	for _, m := range members {
		if wantRoles[m.Username] != string(m.Role) {
			t.Errorf("member %s has role %q, want %q", m.Username, m.Role, wantRoles[m.Username])
		}
	}

	// 3. Bob's training job logs a run through the Go client.
	bobRun, err := client.Init(ctx, client.Options{BaseURL: sys.WriteURL, APIKey: bobKey,
		Entity: "your-team-name", Project: "awesome-segmentation", JobType: "training", Name: "my-run",
		Config: map[string]any{"learning_rate": 0.001}})
	if err != nil {
		t.Fatalf("bob's init: %v", err)
	}
	if bobRun.Name != "my-run" || bobRun.ID == "" {
		t.Fatalf("bob's run = %q (id %q), want my-run with an id", bobRun.Name, bobRun.ID)
	}
	if err := bobRun.Log(map[string]any{"loss": 0.5, "accuracy": 0.8}); err != nil {
		t.Fatal(err)
	}
	if err := bobRun.Log(map[string]any{"loss": 0.4, "accuracy": 0.85}); err != nil {
		t.Fatal(err)
	}
	if err := bobRun.Finish(); err != nil {
		t.Fatalf("bob's finish: %v", err)
	}

	// 5. (before 4, so Alice sees both) Alice starts a run also named my-run.
	aliceRun, err := client.Init(ctx, client.Options{BaseURL: sys.WriteURL, APIKey: aliceKey,
		Entity: "your-team-name", Project: "awesome-segmentation", JobType: "eval", Name: "my-run"})
	if err != nil {
		t.Fatalf("alice's init: %v", err)
	}
	if aliceRun.Name != "my-run-2" || aliceRun.ID == bobRun.ID {
		t.Fatalf("alice's run = %q (id %q), want my-run-2 with its own id (bob's is %q)", aliceRun.Name, aliceRun.ID, bobRun.ID)
	}

	// 4. Alice lists the runs: Bob's beside her own, with everything.
	var runs []runView
	read(aliceKey).must(200, "GET", fmt.Sprintf("%s/runs?min_seq=%d", proj, aliceRun.Seq()), nil, &runs)
	if len(runs) != 2 {
		t.Fatalf("alice sees %d runs, want 2: %+v", len(runs), runs)
	}
	var bobs runView
	for _, r := range runs {
		if r.ID == bobRun.ID {
			bobs = r
		}
	}
	if bobs.Owner != "bob" || bobs.State != "finished" || bobs.JobType != "training" || bobs.Name != "my-run" {
		t.Errorf("bob's run as alice sees it: %+v", bobs)
	}
	if bobs.Config["learning_rate"] != 0.001 {
		t.Errorf("bob's config = %v, want learning_rate 0.001", bobs.Config)
	}
	if bobs.Summary["loss"] != 0.4 || bobs.Summary["accuracy"] != 0.85 {
		t.Errorf("bob's summary = %v, want loss 0.4, accuracy 0.85", bobs.Summary)
	}
	var hist []historyRow
	read(aliceKey).must(200, "GET", proj+"/runs/"+bobRun.ID+"/history", nil, &hist)
	if len(hist) != 2 || hist[0].Step != 0 || hist[1].Step != 1 ||
		hist[0].Values["loss"] != 0.5 || hist[0].Values["accuracy"] != 0.8 ||
		hist[1].Values["loss"] != 0.4 || hist[1].Values["accuracy"] != 0.85 {
		t.Errorf("bob's history = %+v, want steps 0 and 1 with the logged values", hist)
	}
	// Filters: by job_type and owner.
	read(aliceKey).must(200, "GET", proj+"/runs?job_type=training", nil, &runs)
	if len(runs) != 1 || runs[0].ID != bobRun.ID {
		t.Errorf("job_type=training gives %+v, want only bob's run", runs)
	}
	read(aliceKey).must(200, "GET", proj+"/runs?owner=alice&state=running", nil, &runs)
	if len(runs) != 1 || runs[0].ID != aliceRun.ID {
		t.Errorf("owner=alice&state=running gives %+v, want only alice's run", runs)
	}

	// 6. Carol, a Viewer, lists the runs but cannot start one.
	read(carolKey).must(200, "GET", proj+"/runs", nil, &runs)
	if len(runs) != 2 {
		t.Errorf("carol sees %d runs, want 2", len(runs))
	}
	_, err = client.Init(ctx, client.Options{BaseURL: sys.WriteURL, APIKey: carolKey,
		Entity: "your-team-name", Project: "awesome-segmentation", Name: "carols-run"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != "forbidden" || !strings.Contains(ae.Message, "Viewer") {
		t.Fatalf("carol's init: err = %v, want a forbidden rejection naming the Viewer role", err)
	}
	if err := aliceRun.Finish(); err != nil {
		t.Fatal(err)
	}
	read(aliceKey).must(200, "GET", fmt.Sprintf("%s/runs?min_seq=%d", proj, aliceRun.Seq()), nil, &runs)
	if len(runs) != 2 {
		t.Errorf("after carol's attempt there are %d runs, want 2: %+v", len(runs), runs)
	}

	// 7. A non-member sees neither the project nor its runs.
	var projects []map[string]any
	read(malloryKey).must(200, "GET", "/api/v1/projects", nil, &projects)
	if len(projects) != 0 {
		t.Errorf("mallory sees projects %v", projects)
	}
	var e apiError
	if st := read(malloryKey).do("GET", proj+"/runs", nil, &e); st != 404 || e.Error.Code != "project_not_found" {
		t.Errorf("mallory lists runs: %d %+v, want 404 project_not_found", st, e)
	}
	if st := read(malloryKey).do("GET", proj+"/runs/"+bobRun.ID, nil, &e); st != 404 {
		t.Errorf("mallory reads bob's run: %d, want 404", st)
	}
	read(aliceKey).must(200, "GET", "/api/v1/projects", nil, &projects)
	if len(projects) != 1 || projects[0]["name"] != "awesome-segmentation" || projects[0]["role"] != "admin" {
		t.Errorf("alice's projects = %v", projects)
	}
}
