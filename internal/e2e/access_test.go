package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/policy"
)

// accessWorld is the permission matrix's fixture through the real system
// (the same shape as policy's matrixWorld): team acme with project
// acme/proj created by owner; a user per principal; service accounts
// service-account (no invite) and sa-target, made by team-admin.
type accessWorld struct {
	sys    system
	keys   map[string]string // username -> key
	issued []string          // every key handed out
	runID  string            // owner's run in acme/proj
}

func newAccessWorld(t *testing.T, sys system) *accessWorld {
	t.Helper()
	w := &accessWorld{sys: sys, keys: map[string]string{"admin": adminKey, "site-admin": adminKey}, issued: []string{adminKey}}
	admin := api{t, sys.WriteURL, adminKey}
	for _, u := range []string{"viewer", "member", "owner", "team-admin", "none"} {
		w.keys[u] = newUser(t, admin, u, u+"@example.com")
		w.issued = append(w.issued, w.keys[u])
	}
	w.keys["admin-user"] = newUser(t, admin, "admin-user", "admin-user@example.com")
	w.issued = append(w.issued, w.keys["admin-user"])
	admin.must(201, "POST", "/api/v1/teams", map[string]string{"name": "acme"}, nil)
	for _, u := range []string{"viewer", "member", "admin-user", "owner"} {
		admin.must(201, "POST", "/api/v1/teams/acme/members", map[string]string{"username": u, "role": "member"}, nil)
	}
	admin.must(201, "POST", "/api/v1/teams/acme/members", map[string]string{"username": "team-admin", "role": "admin"}, nil)
	ta := api{t, sys.WriteURL, w.keys["team-admin"]}
	for _, sa := range []string{"service-account", "sa-target"} {
		var out struct {
			Key string `json:"key"`
		}
		ta.must(201, "POST", "/api/v1/teams/acme/service-accounts", map[string]string{"username": sa, "key_name": "ci"}, &out)
		if err := validKey(out.Key); err != nil {
			t.Fatalf("service account key %q: %v", out.Key, err)
		}
		w.keys[sa] = out.Key
		w.issued = append(w.issued, out.Key)
	}
	owner := api{t, sys.WriteURL, w.keys["owner"]}
	owner.must(201, "POST", "/api/v1/projects", map[string]string{"entity": "acme", "name": "proj"}, nil)
	for u, r := range map[string]string{"viewer": "viewer", "member": "member", "admin-user": "admin"} {
		owner.must(200, "POST", "/api/v1/projects/acme/proj/members", map[string]string{"username": u, "role": r}, nil)
	}
	var run struct {
		RunID string `json:"run_id"`
		Seq   uint64 `json:"seq"`
	}
	owner.must(201, "POST", "/api/v1/projects/acme/proj/runs", map[string]any{"name": "r"}, &run)
	owner.must(202, "POST", "/api/v1/projects/acme/proj/runs/"+run.RunID+"/log", map[string]any{"rows": []map[string]any{{"step": 0, "values": map[string]float64{"loss": 1}}}}, nil)
	var fin struct {
		Seq uint64 `json:"seq"`
	}
	// An artifact version "ds:v0" with a file a.json, logged over W&B by
	// the owner from the run (the artifact read routes need one).
	logArtifact(t, sys.WriteURL, w.keys["owner"], "acme", "proj", run.RunID, "ds", "a.json", []byte(`{"a":1}`))
	owner.must(200, "POST", "/api/v1/projects/acme/proj/members", map[string]string{"email": "pending@example.com"}, &fin)
	api{t, sys.ReadURL, w.keys["owner"]}.must(200, "GET", fmt.Sprintf("/api/v1/projects/acme/proj?min_seq=%d", fin.Seq), nil, nil)
	w.runID = run.RunID
	return w
}

// validKey checks the key format the issue asks for.
func validKey(k string) error {
	if err := ingestValidate(k); err != nil {
		return err
	}
	if len(k) < 43 {
		return fmt.Errorf("%d characters", len(k))
	}
	return nil
}

// TestPermissionMatrixReads checks every read endpoint for every principal
// against policy's table, through the HTTP API of the real system.
func TestPermissionMatrixReads(t *testing.T) {
	sys := mustAllInOne(t)
	w := newAccessWorld(t, sys)
	user := map[string]string{"admin": "admin-user", "site-admin": "admin"}
	cells := 0
	skipped := 0
	for _, ep := range policy.ReadEndpoint {
		if strings.Contains(ep.Route, "{file...}") {
			// A file of a run: its access is the run's (query.RunFiles
			// reads the run first); wandb's TestRunFiles checks it per
			// role with a stored file.
			skipped++
			continue
		}
		path := strings.TrimPrefix(ep.Route, "GET ")
		path = strings.NewReplacer("{entity}", "acme", "{project}", "proj", "{run}", w.runID, "{username}", "sa-target", "{team}", "acme",
			"{collection}", "ds", "{version}", "v0", "{path...}", "a.json").Replace(path)
		// The query each endpoint needs to answer 200 when allowed.
		path += map[string]string{"/lines": "?file=output.log", "/run-groups": "?by=job_type", "/sampled": "?metric=loss", "/events": "?once=1",
			"/asof": "?time=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}[path[strings.LastIndex(path, "/"):]]
		perm, ok := policy.PermissionOf(ep.Action)
		if !ok {
			t.Fatalf("%s: action %q not in the table", ep.Route, ep.Action)
		}
		for _, k := range policy.MatrixPrincipals {
			if k.Name == "site-admin" {
				// The only site admin created the team, so it is also
				// a team admin here; policy's matrix covers it.
				continue
			}
			name := k.Name
			if u, ok := user[name]; ok {
				name = u
			}
			role := k.RoleOn(perm.Scope)
			want := 200
			switch {
			case policy.Allowed(role, ep.Action):
			case perm.Scope == policy.ScopeProject && role != "":
				want = 403 // a member without the permission
			default:
				want = 404 // the project (or user) does not show
			}
			var raw json.RawMessage
			got := api{t, sys.WriteURL, w.keys[name]}.do("GET", path, nil, &raw)
			if got != want {
				t.Errorf("GET %s as %s (%s): %d, table says %d: %s", path, k.Name, name, got, want, raw)
			}
			cells++
		}
	}
	if n := (len(policy.ReadEndpoint) - skipped) * (len(policy.MatrixPrincipals) - 1); cells != n {
		t.Errorf("%d cells, want %d", cells, n)
	}
	t.Logf("permission matrix (reads): %d cells (%d endpoints x %d principals)", cells, len(policy.ReadEndpoint), len(policy.MatrixPrincipals)-1)
}

// TestReadEndpointsAreInTheTable: every GET route registered by the read
// and write APIs appears in policy.ReadEndpoint (or is not project data).
func TestReadEndpointsAreInTheTable(t *testing.T) {
	known := map[string]bool{"GET /api/v1/whoami": true, "GET /api/v1/projects": true, "GET /healthz": true,
		"GET /api/v1/admin/readmodel": true} // site admins only: no project data
	for _, ep := range policy.ReadEndpoint {
		known[ep.Route] = true
	}
	for _, dir := range []string{"query", "ingest", "http", "wandb"} {
		files, _ := filepath.Glob(filepath.Join(repoRoot(t), dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(b), "\n") {
				i := strings.Index(line, `HandleFunc("GET /api/`)
				if i < 0 {
					continue
				}
				route := strings.SplitN(line[i+len(`HandleFunc("`):], `"`, 2)[0]
				if !known[route] {
					t.Errorf("%s: read route %q is not in policy.ReadEndpoint", filepath.Base(f), route)
				}
			}
		}
	}
}

func TestKeysListRevokeAndNeverStored(t *testing.T) {
	sys := mustAllInOne(t)
	admin := api{t, sys.WriteURL, adminKey}
	issued := []string{adminKey}
	alice := newUser(t, admin, "alice", "alice@example.com")
	issued = append(issued, alice)
	aw := api{t, sys.WriteURL, alice}
	// Several named keys.
	var k2, k3 struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}
	aw.must(201, "POST", "/api/v1/users/alice/keys", map[string]string{"name": "laptop"}, &k2)
	aw.must(201, "POST", "/api/v1/users/alice/keys", map[string]string{"name": "cluster"}, &k3)
	issued = append(issued, k2.Key, k3.Key)
	for _, k := range []string{k2.Key, k3.Key} {
		if err := validKey(k); err != nil {
			t.Errorf("key %q: %v", k, err)
		}
	}
	var list []map[string]any
	aw.must(200, "GET", "/api/v1/users/alice/keys", nil, &list)
	if len(list) != 3 || list[1]["name"] != "laptop" || list[2]["name"] != "cluster" || list[1]["id"] != k2.KeyID {
		t.Errorf("alice's keys = %v", list)
	}
	for _, k := range list {
		if len(k) != 3 || k["created"] == nil {
			t.Errorf("a listed key shows %v; want exactly id, name, created", k)
		}
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), policy.HashKey(k2.Key)) || strings.Contains(string(raw), k2.Key) {
		t.Errorf("the key list shows a key or its hash")
	}
	// Others may not list or revoke alice's keys.
	bob := newUser(t, admin, "bob", "")
	issued = append(issued, bob)
	if st := (api{t, sys.WriteURL, bob}).do("GET", "/api/v1/users/alice/keys", nil, nil); st != 404 {
		t.Errorf("bob lists alice's keys: %d, want 404", st)
	}
	if st := (api{t, sys.WriteURL, bob}).do("DELETE", "/api/v1/users/alice/keys/"+k2.KeyID, nil, nil); st != 404 {
		t.Errorf("bob revokes alice's key: %d, want 404", st)
	}
	// A NATS connection with the key, to see it cut on revocation.
	closed := make(chan struct{})
	nc, err := nats.Connect(sys.NATSURL, nats.Token(k2.Key), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("connect to NATS with an API key: %v", err)
	}
	defer nc.Close()
	// Revoke: after the call returns, the write edge refuses the key at
	// once, and a read at the revocation's sequence refuses it too.
	api{t, sys.ReadURL, k2.Key}.must(200, "GET", "/api/v1/whoami", nil, nil)
	var rev struct {
		Seq uint64 `json:"seq"`
	}
	start := time.Now()
	aw.must(200, "DELETE", "/api/v1/users/alice/keys/"+k2.KeyID, nil, &rev)
	if st := (api{t, sys.WriteURL, k2.Key}).do("POST", "/api/v1/projects", map[string]string{"name": "p"}, nil); st != 401 {
		t.Errorf("write with a revoked key right after revocation: %d, want 401", st)
	}
	// The read side follows the log: poll without min_seq until refused.
	for {
		if st := (api{t, sys.ReadURL, k2.Key}).do("GET", "/api/v1/whoami", nil, nil); st == 401 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the read side still accepts a key revoked 10s ago")
		}
		time.Sleep(5 * time.Millisecond)
	}
	readRefused := time.Since(start)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the NATS connection of a revoked key is still open after 10s")
	}
	natsClosed := time.Since(start)
	t.Logf("revocation: write edge refused at once; read side after %s; NATS connection closed after %s", readRefused, natsClosed)
	if _, err := nats.Connect(sys.NATSURL, nats.Token(k2.Key), nats.NoReconnect()); err == nil {
		t.Error("a revoked key connects to NATS")
	}
	aw.must(200, "GET", "/api/v1/users/alice/keys", nil, &list)
	if len(list) != 2 {
		t.Errorf("after revocation alice has %d keys listed, want 2", len(list))
	}
	// The other keys still work.
	api{t, sys.ReadURL, k3.Key}.must(200, "GET", "/api/v1/whoami", nil, nil)

	// No key issued here appears in the data directory or the logs.
	sys.stop()
	scanForKeys(t, sys, issued)
}

// scanForKeys reads every file under the data directory (NATS stores and
// the Badger read model, raw bytes) and the captured logs, looking for any
// of the raw keys.
func scanForKeys(t *testing.T, sys system, keys []string) {
	t.Helper()
	files, bytesRead := 0, 0
	// Positive control: every key's hash is in the log, so the scan must
	// find each of them (it reads where the data is).
	var hashes []string
	for _, k := range keys {
		hashes = append(hashes, policy.HashKey(k))
	}
	hashFound := map[string]bool{}
	err := filepath.WalkDir(sys.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n, found, err := scanFile(path, append(append([]string{}, keys...), hashes...))
		if err != nil {
			return err
		}
		files++
		bytesRead += n
		for _, k := range found {
			if slices.Contains(hashes, k) {
				hashFound[k] = true
				continue
			}
			t.Errorf("raw API key %s... found in %s", k[:8], path)
		}
		return nil
	})
	if len(hashFound) != len(hashes) {
		t.Errorf("the scan found %d of the %d key hashes stored in the log: it does not read the data", len(hashFound), len(hashes))
	}
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	if sys.logs != nil {
		logs = append(logs, sys.logs.String())
	}
	for _, p := range sys.processes {
		logs = append(logs, p.out.String())
	}
	for _, l := range logs {
		for _, k := range keys {
			if strings.Contains(l, k) {
				t.Errorf("raw API key found in the logs")
			}
		}
	}
	if files < 5 {
		t.Errorf("scanned only %d files under %s", files, sys.DataDir)
	}
	t.Logf("scanned %d files (%d bytes) and %d logs for %d keys", files, bytesRead, len(logs), len(keys))
}

func TestServiceAccountsAndRoles(t *testing.T) {
	sys := mustAllInOne(t)
	w := newAccessWorld(t, sys)
	sa := api{t, sys.WriteURL, w.keys["service-account"]}
	var e apiError
	// Default deny: no role on team projects until invited.
	if st := sa.do("POST", "/api/v1/projects/acme/proj/runs", map[string]string{"name": "ci"}, &e); st != 404 || e.Error.Code != "project_not_found" {
		t.Errorf("uninvited service account starts a run: %d %+v", st, e)
	}
	// A Member may not create service accounts; nobody may make one a team admin.
	if st := (api{t, sys.WriteURL, w.keys["member"]}).do("POST", "/api/v1/teams/acme/service-accounts", map[string]string{"username": "bot9"}, &e); st != 403 {
		t.Errorf("a team member creates a service account: %d %+v", st, e)
	}
	if st := (api{t, sys.WriteURL, w.keys["team-admin"]}).do("POST", "/api/v1/teams/acme/members", map[string]string{"username": "service-account", "role": "admin"}, &e); st != 403 {
		t.Errorf("a service account made team admin: %d %+v", st, e)
	}
	// The team admin manages its keys.
	var keys []map[string]any
	(api{t, sys.WriteURL, w.keys["team-admin"]}).must(200, "GET", "/api/v1/users/service-account/keys", nil, &keys)
	if len(keys) != 1 || keys[0]["name"] != "ci" {
		t.Errorf("service account keys = %v", keys)
	}
	// Invited as Member it logs its own runs, and only those.
	owner := api{t, sys.WriteURL, w.keys["owner"]}
	owner.must(200, "POST", "/api/v1/projects/acme/proj/members", map[string]string{"username": "service-account", "role": "member"}, nil)
	var run struct {
		RunID string `json:"run_id"`
	}
	sa.must(201, "POST", "/api/v1/projects/acme/proj/runs", map[string]string{"name": "ci"}, &run)
	sa.must(200, "POST", "/api/v1/projects/acme/proj/runs/"+run.RunID+"/finish", map[string]int{"exit_code": 0}, nil)
	if st := sa.do("POST", "/api/v1/projects/acme/proj/runs/"+w.runID+"/finish", map[string]int{"exit_code": 0}, &e); st != 403 || e.Error.Code != "run_not_yours" {
		t.Errorf("a Member finishes another's run: %d %+v", st, e)
	}
	// Admins act on any run; Viewers on none.
	if st := (api{t, sys.WriteURL, w.keys["viewer"]}).do("PATCH", "/api/v1/projects/acme/proj/runs/"+w.runID, map[string]any{"add_tags": []string{"x"}}, &e); st != 403 {
		t.Errorf("a Viewer tags a run: %d %+v", st, e)
	}
	(api{t, sys.WriteURL, w.keys["admin-user"]}).must(200, "PATCH", "/api/v1/projects/acme/proj/runs/"+w.runID, map[string]any{"add_tags": []string{"x"}}, nil)
	(api{t, sys.WriteURL, w.keys["admin-user"]}).must(200, "DELETE", "/api/v1/projects/acme/proj/runs/"+run.RunID, nil, nil)

	// The last Admin can never be removed, demoted or leave.
	admin := api{t, sys.WriteURL, adminKey}
	last := newUser(t, admin, "solo", "")
	solo := api{t, sys.WriteURL, last}
	solo.must(201, "POST", "/api/v1/projects", map[string]string{"name": "mine"}, nil)
	newUser(t, admin, "helper", "")
	solo.must(200, "POST", "/api/v1/projects/solo/mine/members", map[string]string{"username": "helper", "role": "admin"}, nil)
	// Two admins: helper demotes solo... then solo is no longer admin; make solo admin again and remove helper.
	solo.must(200, "DELETE", "/api/v1/projects/solo/mine/members/helper", nil, nil)
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/api/v1/projects/solo/mine/members/solo"},
		{"PATCH", "/api/v1/projects/solo/mine/members/solo"},
	} {
		if st := solo.do(c.method, c.path, map[string]string{"role": "member"}, &e); st != 409 || e.Error.Code != "last_admin" {
			t.Errorf("%s %s by the last admin: %d %+v", c.method, c.path, st, e)
		}
	}
	// A team admin (Admin of every team project) cannot remove the last member Admin either.
	if st := (api{t, sys.WriteURL, w.keys["team-admin"]}).do("DELETE", "/api/v1/projects/acme/proj/members/owner", nil, &e); st != 200 {
		// owner is not the last admin (admin-user is one too): allowed.
		t.Errorf("team admin removes one of two admins: %d %+v", st, e)
	}
	if st := (api{t, sys.WriteURL, w.keys["team-admin"]}).do("DELETE", "/api/v1/projects/acme/proj/members/admin-user", nil, &e); st != 409 || e.Error.Code != "last_admin" {
		t.Errorf("team admin removes the last member admin: %d %+v", st, e)
	}

	// Project deletion: gone from every read; the name is free again and
	// the new project starts empty.
	var del struct {
		Seq uint64 `json:"seq"`
	}
	(api{t, sys.WriteURL, w.keys["admin-user"]}).must(200, "DELETE", "/api/v1/projects/acme/proj", nil, &del)
	r := api{t, sys.ReadURL, w.keys["admin-user"]}
	if st := r.do("GET", fmt.Sprintf("/api/v1/projects/acme/proj/runs?min_seq=%d", del.Seq), nil, &e); st != 404 {
		t.Errorf("runs of a deleted project: %d", st)
	}
	var projects []map[string]any
	r.must(200, "GET", "/api/v1/projects", nil, &projects)
	if len(projects) != 0 {
		t.Errorf("deleted project still listed: %v", projects)
	}
	var cr struct {
		Seq uint64 `json:"seq"`
	}
	(api{t, sys.WriteURL, w.keys["member"]}).must(201, "POST", "/api/v1/projects", map[string]string{"entity": "acme", "name": "proj"}, &cr)
	var runs []map[string]any
	api{t, sys.ReadURL, w.keys["member"]}.must(200, "GET", fmt.Sprintf("/api/v1/projects/acme/proj/runs?min_seq=%d", cr.Seq), nil, &runs)
	if len(runs) != 0 {
		t.Errorf("a re-created project shows the old runs: %v", runs)
	}
	var trail []ingestAudit
	(api{t, sys.WriteURL, w.keys["member"]}).must(200, "GET", "/api/v1/projects/acme/proj/audit", nil, &trail)
	if len(trail) != 1 || trail[0].Type != "project_created" {
		t.Errorf("a re-created project's audit trail shows its predecessor's: %+v", trail)
	}
}

type ingestAudit struct {
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Type     string    `json:"type"`
	Accepted bool      `json:"accepted"`
	Code     string    `json:"code"`
	Reason   string    `json:"reason"`
}

func TestAuditTrail(t *testing.T) {
	sys := mustAllInOne(t)
	w := newAccessWorld(t, sys)
	var e apiError
	// A rejected action by a member, an accepted one by the owner.
	if st := (api{t, sys.WriteURL, w.keys["member"]}).do("DELETE", "/api/v1/projects/acme/proj", nil, &e); st != 403 {
		t.Fatalf("member deletes the project: %d", st)
	}
	ow := api{t, sys.WriteURL, w.keys["owner"]}
	ow.must(200, "PATCH", "/api/v1/projects/acme/proj/members/member", map[string]string{"role": "viewer"}, nil)
	var trail []ingestAudit
	ow.must(200, "GET", "/api/v1/projects/acme/proj/audit?limit=1000", nil, &trail)
	var sawReject, sawRole bool
	for _, a := range trail {
		if !a.Accepted && a.Actor == "member" && a.Type == "project_deleted" && a.Code == "forbidden" && a.Reason != "" {
			sawReject = true
		}
		if a.Accepted && a.Actor == "owner" && a.Type == "role_changed" {
			sawRole = true
		}
		if a.Time.IsZero() || a.Actor == "" || a.Type == "metrics_logged" {
			t.Errorf("audit entry %+v", a)
		}
	}
	if !sawReject || !sawRole || trail[0].Type != "role_changed" {
		t.Errorf("audit trail (newest first) lacks the rejection or the role change: %+v", trail)
	}
	// Paging back.
	var page []ingestAudit
	ow.must(200, "GET", "/api/v1/projects/acme/proj/audit?limit=2&before="+trail[1].Time.Format(time.RFC3339Nano), nil, &page)
	if len(page) != 2 || !page[0].Time.Before(trail[1].Time) {
		t.Errorf("page before %s = %+v", trail[1].Time, page)
	}
	// The same 404/403 rule as everywhere.
	if st := (api{t, sys.WriteURL, w.keys["viewer"]}).do("GET", "/api/v1/projects/acme/proj/audit", nil, &e); st != 403 {
		t.Errorf("viewer reads the audit: %d", st)
	}
	if st := (api{t, sys.WriteURL, w.keys["none"]}).do("GET", "/api/v1/projects/acme/proj/audit", nil, &e); st != 404 || e.Error.Code != "project_not_found" {
		t.Errorf("non-member reads the audit: %d %+v", st, e)
	}
	// The CLI.
	t.Setenv("LOGBOOK_URL", sys.WriteURL)
	t.Setenv("LOGBOOK_API_KEY", w.keys["owner"])
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"audit", "acme/proj", "-limit", "3", "-o", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"role_changed"`) {
		t.Errorf("logbook audit printed %s", out.String())
	}
}

func TestRateLimits(t *testing.T) {
	sys := mustAllInOneWith(t, func(c *app.AllInOneConfig) { c.KeyRate, c.KeyBurst = 1, 5 })
	admin := api{t, sys.WriteURL, adminKey}
	var limited *http.Response
	for i := 0; i < 50 && limited == nil; i++ {
		req, _ := http.NewRequest("GET", sys.WriteURL+"/api/v1/users/admin/keys", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 429 {
			limited = resp
		} else {
			resp.Body.Close()
		}
	}
	if limited == nil {
		t.Fatal("50 requests in a row with a 1/s, burst 5 limit were all served")
	}
	defer limited.Body.Close()
	var e apiError
	_ = json.NewDecoder(limited.Body).Decode(&e)
	if e.Error.Code != "rate_limited" || limited.Header.Get("Retry-After") == "" {
		t.Errorf("429 answer: %+v, Retry-After %q", e, limited.Header.Get("Retry-After"))
	}
	_ = admin
	// Body and batch limits.
	big := bytes.Repeat([]byte("x"), 5<<20)
	body := []byte(`{"name":"` + string(big) + `"}`)
	time.Sleep(6 * time.Second) // refill the bucket
	if st := admin.do("POST", "/api/v1/projects", body, &e); st != 413 || e.Error.Code != "too_large" {
		t.Errorf("5 MiB body: %d %+v", st, e)
	}

	// A client publishing proposals over NATS has the same rate, one
	// budget per user: past the burst, JetStream errors of code 429.
	nc, err := nats.Connect(sys.NATSURL, nats.Token(adminKey), nats.CustomInboxPrefix(bus.InboxPrefix("admin")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	njs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stored, limitedN := 0, 0
	for i := 0; i < 20; i++ {
		_, err := njs.Publish(context.Background(), "lb.in.admin.admin._.project_created", []byte("{}"))
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			stored++
		case errors.As(err, &apiErr) && apiErr.Code == 429:
			limitedN++
		default:
			t.Fatalf("publish over NATS: %v", err)
		}
	}
	if stored < 5 || limitedN == 0 || stored+limitedN != 20 {
		t.Errorf("20 proposals over NATS with a 1/s, burst 5 limit: %d stored, %d refused with 429", stored, limitedN)
	}
}

func ingestValidate(k string) error { return ingest.ValidateAPIKey(k) }

func getMsg(t *testing.T, js jetstream.JetStream, seq uint64) (*jetstream.RawStreamMsg, error) {
	t.Helper()
	s, err := js.Stream(context.Background(), bus.EventsStream)
	if err != nil {
		return nil, err
	}
	return s.GetMsg(context.Background(), seq)
}

// TestExternalServerRefusesClients checks deploy/nats.conf as shipped: a
// client connecting with an API key may publish only its own proposals,
// and a revoked key's connection is closed (through the system account).
func TestExternalServerRefusesClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	sys := mustProcesses(t)
	admin := api{t, sys.WriteURL, adminKey}
	key := newUser(t, admin, "eve", "")
	if _, err := nats.Connect(sys.NATSURL, nats.Token("lb-not0a0key000000000000000000000000000000000000000"), nats.NoReconnect()); err == nil {
		t.Fatal("an unknown key connected to the external server")
	}
	if _, err := nats.Connect(sys.NATSURL, nats.NoReconnect()); err == nil {
		t.Fatal("a client without credentials connected to the external server")
	}
	errs := make(chan error, 100)
	closed := make(chan struct{})
	nc, err := nats.Connect(sys.NATSURL, nats.Token(key), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("connect with an API key: %v", err)
	}
	defer nc.Close()
	for _, s := range []string{"lb.ev.eve._.key_created", "lb.rej.eve._", "$JS.API.STREAM.DELETE.LB_EVENTS", "lb.in.admin.eve._.key_created"} {
		if err := nc.Publish(s, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("publish to %s: %v", s, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("publish to %s: no refusal from the server", s)
		}
	}
	if err := nc.Publish("lb.in.eve.eve._.key_created", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Errorf("publish of an own proposal refused: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	var keys []map[string]any
	api{t, sys.WriteURL, key}.must(200, "GET", "/api/v1/users/eve/keys", nil, &keys)
	api{t, sys.WriteURL, key}.must(200, "DELETE", fmt.Sprintf("/api/v1/users/eve/keys/%s", keys[0]["id"]), nil, nil)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection of a revoked key is still open after 10s")
	}
	sys.processes[0].cmd.Process.Signal(os.Interrupt) // stop the server and ingest before scanning
	scanForKeys(t, system{DataDir: sys.DataDir, processes: sys.processes}, []string{adminKey, key})
}

// scanFile looks for the keys in a file's data, in chunks that overlap by
// the longest key, skipping the holes of sparse files (Badger's value log
// is a large sparse file). It returns the number of bytes read.
func scanFile(path string, keys []string) (int, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	longest := 0
	for _, k := range keys {
		longest = max(longest, len(k))
	}
	const seekData, seekHole = 3, 4 // lseek(2) on Linux
	var found []string
	total := 0
	for pos := int64(0); pos < st.Size(); {
		start, err := f.Seek(pos, seekData)
		if err != nil {
			if pos == 0 {
				start = 0 // no SEEK_DATA here: read everything
			} else {
				break // no more data
			}
		}
		end, err := f.Seek(start, seekHole)
		if err != nil || end <= start {
			end = st.Size()
		}
		buf := make([]byte, 1<<20+longest)
		keep := 0
		for off := start; off < end; {
			n, err := f.ReadAt(buf[keep:keep+int(min(int64(1<<20), end-off))], off)
			total += n
			chunk := buf[:keep+n]
			for _, k := range keys {
				if bytes.Contains(chunk, []byte(k)) && !slices.Contains(found, k) {
					found = append(found, k)
				}
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return total, found, err
			}
			if n == 0 {
				break
			}
			off += int64(n)
			keep = min(longest, len(chunk))
			copy(buf, chunk[len(chunk)-keep:])
		}
		pos = end
	}
	return total, found, nil
}
