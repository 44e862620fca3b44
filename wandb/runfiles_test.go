package wandb_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const runFilesQuery = `query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String, $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) { project(name: $project, entityName: $entity) { internalId run(name: $name) { fileCount files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) { edges { node { id name url(upload: $upload) directUrl sizeBytes mimetype updatedAt md5 } cursor } pageInfo { endCursor hasNextPage } } } } }`

// TestRunFiles: files uploaded through CreateRunFiles are listed and
// downloaded through RunFiles (GET url with Basic auth, as wandb-core's
// DownloadFileRequest does) and through the native API; a Viewer may read
// them, a non-member sees nothing.
func TestRunFiles(t *testing.T) {
	lb := mustLogbook(t)
	alice, vic, mallory := lb.newUser("alice"), lb.newUser("vic"), lb.newUser("mallory")
	lb.native(201, "POST", "/api/v1/projects", alice, map[string]string{"name": "proj"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/proj/members", alice, map[string]string{"username": "vic", "role": "viewer"}, nil)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "r1", "project": "proj", "entity": "alice", "config": pyConfig})).ok(t)
	files := map[string]string{"media/x.txt": "hello media", "output.log": "line 1\nline 2\n", "wandb-summary.json": `{"loss":0.5}`, "config.yaml": "lr: 0.1\n"}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	cf := lb.gql("/graphql", alice, "CreateRunFiles", createFilesQuery, map[string]any{"entity": "alice", "project": "proj", "run": "r1", "files": names}).ok(t)
	for _, e := range get(cf.Data, "createRunFiles", "files").([]any) {
		req, _ := http.NewRequest("PUT", get(e, "uploadUrl").(string), strings.NewReader(files[get(e, "name").(string)]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	vars := map[string]any{"project": "proj", "entity": "alice", "name": "r1", "fileCursor": nil, "fileLimit": 50, "fileNames": []string{}, "upload": false, "pattern": nil}
	for _, key := range []string{alice, vic} {
		a := lb.gql("/graphql", key, "", runFilesQuery, vars).ok(t) // Python sends operationName ""
		run := get(a.Data, "project", "run")
		edges, _ := get(run, "files", "edges").([]any)
		if get(run, "fileCount") != 4.0 || len(edges) != 4 || get(run, "files", "pageInfo", "hasNextPage") != false {
			t.Fatalf("RunFiles = %v", a.Data)
		}
		for _, e := range edges {
			n := get(e, "node")
			name := get(n, "name").(string)
			if get(n, "sizeBytes") != float64(len(files[name])) || get(n, "md5") == nil {
				t.Fatalf("node %v", n)
			}
			req, _ := http.NewRequest("GET", get(n, "url").(string), nil)
			req.Header.Set("Authorization", basic(key))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != files[name] {
				t.Fatalf("GET %s: %d %q", get(n, "url"), resp.StatusCode, body)
			}
		}
	}
	// Paging and the LIKE pattern.
	vars["fileLimit"] = 3
	a := lb.gql("/graphql", alice, "RunFiles", runFilesQuery, vars).ok(t)
	if n := len(get(a.Data, "project", "run", "files", "edges").([]any)); n != 3 || get(a.Data, "project", "run", "files", "pageInfo", "hasNextPage") != true {
		t.Fatalf("page 1: %v", a.Data)
	}
	vars["fileCursor"] = get(a.Data, "project", "run", "files", "pageInfo", "endCursor")
	a = lb.gql("/graphql", alice, "RunFiles", runFilesQuery, vars).ok(t)
	if e := get(a.Data, "project", "run", "files", "edges").([]any); len(e) != 1 || get(e[0], "node", "name") != "wandb-summary.json" {
		t.Fatalf("page 2: %v", a.Data)
	}
	vars["fileCursor"], vars["fileLimit"], vars["pattern"] = nil, 50, "%.json"
	a = lb.gql("/graphql", alice, "RunFiles", runFilesQuery, vars).ok(t)
	if get(a.Data, "project", "run", "fileCount") != 1.0 {
		t.Fatalf("pattern: %v", a.Data)
	}
	// A non-member: run null, and 404 on the native routes.
	a = lb.gql("/graphql", mallory, "RunFiles", runFilesQuery, vars).ok(t)
	if get(a.Data, "project", "run") != nil {
		t.Fatalf("non-member sees %v", a.Data)
	}
	for _, p := range []string{"/api/v1/projects/alice/proj/runs/r1/files", "/api/v1/projects/alice/proj/runs/r1/files/media/x.txt"} {
		if st, _ := lb.call("GET", p, "Bearer "+mallory, nil); st != 404 {
			t.Errorf("non-member GET %s: %d", p, st)
		}
	}
	if got := lb.download(vic, "/api/v1/projects/alice/proj/runs/r1/files/media/x.txt"); got != files["media/x.txt"] {
		t.Fatalf("viewer download %q", got)
	}
	if st, _ := lb.call("GET", "/api/v1/projects/alice/proj/runs/r1/files/nope.txt", "Bearer "+alice, nil); st != 404 {
		t.Errorf("missing file: %d", st)
	}
}
