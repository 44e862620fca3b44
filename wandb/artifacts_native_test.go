package wandb_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// nativeVersion is a version as the native API answers it.
type nativeVersion struct {
	ID         string   `json:"id"`
	Entity     string   `json:"entity"`
	Project    string   `json:"project"`
	Collection string   `json:"collection"`
	Version    string   `json:"version"`
	State      string   `json:"state"`
	Digest     string   `json:"digest"`
	Aliases    []string `json:"aliases"`
	Size       int64    `json:"size"`
	FileCount  int      `json:"file_count"`
	Metadata   any      `json:"metadata"`
	Run        *struct {
		Entity, Project, Run string
	} `json:"created_by_run"`
	UsedBy []struct {
		Entity, Project, Run string
	} `json:"used_by"`
	Manifest *struct {
		Contents map[string]struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"contents"`
	} `json:"manifest"`
}

// poll retries fn (a read of the read model, which follows the log a
// moment after the write side) until it reports done.
func (lb *logbook) poll(what string, fn func() (bool, string)) {
	lb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := fn()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			lb.t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getJSON reads a native route as key, answering the status and decoding
// a 200 into out.
func (lb *logbook) getJSON(path, key string, out any) int {
	lb.t.Helper()
	st, data := lb.call("GET", path, "Bearer "+key, nil)
	if st == 200 && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			lb.t.Fatalf("GET %s: %v: %s", path, err, data)
		}
	}
	return st
}

// getBytes downloads a file through the native API.
func (lb *logbook) getBytes(path, key string) (int, []byte, http.Header) {
	lb.t.Helper()
	req, _ := http.NewRequest("GET", lb.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), resp.Header
}

// TestArtifactsNativeAPI drives the W&B protocol (log v0 with "best", log
// a changed v1, use v0 from a run in another project) and reads the same
// artifacts through the native API from the read model: collections,
// versions with aliases, one version by vN, alias and id with its
// manifest, each file's bytes (compared with what was logged), lineage
// both ways, roles (Admin and Viewer read, a non-member gets 404 on every
// route), a soft-deleted version hidden, the W&B lookups agreeing, and a
// replay of the log giving the live read model's digest.
func TestArtifactsNativeAPI(t *testing.T) {
	lb := mustLogbook(t)
	alice, bob, mallory := lb.newUser("alice"), lb.newUser("bob"), lb.newUser("mallory")
	lb.native(201, "POST", "/api/v1/projects", alice, map[string]string{"name": "artproj"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/artproj/members", alice, map[string]string{"username": "bob", "role": "viewer"}, nil)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "producer", "project": "artproj", "entity": "alice", "config": pyConfig})).ok(t)
	v0files := map[string]string{"a.txt": "hello world", "b.txt": "first b", "sub/c.txt": strings.Repeat("c", 5000)}
	v1files := map[string]string{"a.txt": "hello world", "b.txt": "second b, changed", "sub/c.txt": strings.Repeat("c", 5000)}
	l0 := lb.logArtifact(alice, "alice", "artproj", "producer", "dataset", "dataset", v0files, "best")
	l1 := lb.logArtifact(alice, "alice", "artproj", "producer", "dataset", "dataset", v1files)
	lb.gql("/graphql", bob, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "consumer", "project": "train", "entity": "bob", "config": pyConfig})).ok(t)
	lb.gql("/graphql", bob, "", useQuery, map[string]any{"entityName": "bob", "projectName": "train", "runName": "consumer", "artifactID": l0.id, "usedAs": nil}).ok(t)

	base := "/api/v1/projects/alice/artproj"
	// The read model follows the log: wait until it has the use.
	lb.poll("bob's input", func() (bool, string) {
		var ra struct{ Inputs []nativeVersion }
		st := lb.getJSON("/api/v1/projects/bob/train/runs/consumer/artifacts", bob, &ra)
		return st == 200 && len(ra.Inputs) == 1, fmt.Sprint(st, ra)
	})

	// Collections (a Viewer reads them).
	var colls []struct {
		Name, Type string
		Versions   int               `json:"versions"`
		Aliases    map[string]string `json:"aliases"`
		Latest     string            `json:"latest"`
	}
	if st := lb.getJSON(base+"/artifacts", bob, &colls); st != 200 || len(colls) != 1 || colls[0].Name != "dataset" || colls[0].Type != "dataset" ||
		colls[0].Versions != 2 || fmt.Sprint(colls[0].Aliases) != "map[best:v0 latest:v1]" || colls[0].Latest != "v1" {
		t.Fatalf("collections: %d %+v", st, colls)
	}
	// A collection's versions, by index, with aliases.
	var cv struct {
		Versions []nativeVersion `json:"versions"`
	}
	if st := lb.getJSON(base+"/artifacts/dataset", bob, &cv); st != 200 || len(cv.Versions) != 2 || cv.Versions[0].ID != l0.id || cv.Versions[0].Version != "v0" ||
		fmt.Sprint(cv.Versions[0].Aliases) != "[best]" || cv.Versions[1].ID != l1.id || fmt.Sprint(cv.Versions[1].Aliases) != "[latest]" {
		t.Fatalf("versions: %d %+v", st, cv)
	}
	// One version by alias, vN and id: its manifest and lineage. bob may
	// read his own consumer run; alice may not read bob's project, so she
	// does not see that consumer.
	for _, name := range []string{"best", "v0", l0.id} {
		var v nativeVersion
		if st := lb.getJSON(base+"/artifacts/dataset/"+name, bob, &v); st != 200 || v.ID != l0.id || v.State != "COMMITTED" || v.Digest != artifactDigest(v0files) ||
			v.FileCount != 3 || v.Size != int64(len(v0files["a.txt"])+len(v0files["b.txt"])+len(v0files["sub/c.txt"])) || v.Manifest == nil ||
			len(v.Manifest.Contents) != 3 || v.Run == nil || v.Run.Run != "producer" || len(v.UsedBy) != 1 || v.UsedBy[0].Run != "consumer" ||
			v.UsedBy[0].Project != "train" || fmt.Sprint(v.Metadata) != "map[rows:3]" {
			t.Fatalf("%s: %d %+v", name, st, v)
		}
	}
	var va nativeVersion
	if lb.getJSON(base+"/artifacts/dataset/latest", alice, &va); va.ID != l1.id || len(va.UsedBy) != 0 {
		t.Fatalf("latest as alice: %+v", va)
	}
	if lb.getJSON(base+"/artifacts/dataset/best", alice, &va); va.ID != l0.id || len(va.UsedBy) != 0 {
		t.Fatalf("alice sees a consumer in a project she may not read: %+v", va.UsedBy)
	}
	// Each file's bytes, byte-exact, with the manifest's MD5.
	for ver, files := range map[string]map[string]string{"v0": v0files, "latest": v1files} {
		for p, want := range files {
			st, body, h := lb.getBytes(base+"/artifacts/dataset/"+ver+"/files/"+p, bob)
			if st != 200 || string(body) != want || h.Get("Content-MD5") != b64md5([]byte(want)) {
				t.Fatalf("%s %s: %d %q %v", ver, p, st, body, h)
			}
		}
	}
	if st, _, _ := lb.getBytes(base+"/artifacts/dataset/v0/files/nope.txt", bob); st != 404 {
		t.Fatalf("a missing file: %d", st)
	}
	// Lineage from the runs' side.
	var ra struct{ Inputs, Outputs []nativeVersion }
	if lb.getJSON("/api/v1/projects/bob/train/runs/consumer/artifacts", bob, &ra); len(ra.Inputs) != 1 || ra.Inputs[0].ID != l0.id ||
		ra.Inputs[0].Entity != "alice" || len(ra.Outputs) != 0 {
		t.Fatalf("consumer's artifacts: %+v", ra)
	}
	if lb.getJSON(base+"/runs/producer/artifacts", bob, &ra); len(ra.Inputs) != 0 || len(ra.Outputs) != 2 || ra.Outputs[0].ID != l0.id || ra.Outputs[1].ID != l1.id {
		t.Fatalf("producer's artifacts: %+v", ra)
	}
	// A non-member gets 404 on every route (nothing leaks, not even by id).
	for _, p := range []string{base + "/artifacts", base + "/artifacts/dataset", base + "/artifacts/dataset/best", base + "/artifacts/dataset/" + l0.id,
		base + "/artifacts/dataset/v0/files/a.txt", base + "/runs/producer/artifacts"} {
		if st, _, _ := lb.getBytes(p, mallory); st != 404 {
			t.Errorf("GET %s as a non-member: %d", p, st)
		}
		if st, _, _ := lb.getBytes(p, alice); st != 200 {
			t.Errorf("GET %s as the Admin: %d", p, st)
		}
	}
	// Unknown names: 404.
	for _, p := range []string{base + "/artifacts/nope", base + "/artifacts/dataset/v7", base + "/artifacts/dataset/nope"} {
		if st, _, _ := lb.getBytes(p, bob); st != 404 {
			t.Errorf("GET %s: %d", p, st)
		}
	}

	// Soft delete of v0: hidden from the versions, its names and lineage.
	lb.native(200, "DELETE", base+"/artifacts/"+l0.id+"?force=true", alice, nil, nil)
	lb.poll("v0 hidden", func() (bool, string) {
		st := lb.getJSON(base+"/artifacts/dataset/v0", bob, nil)
		return st == 404, fmt.Sprint(st)
	})
	if lb.getJSON(base+"/artifacts/dataset", bob, &cv); len(cv.Versions) != 1 || cv.Versions[0].ID != l1.id {
		t.Fatalf("versions after the delete: %+v", cv)
	}
	if lb.getJSON("/api/v1/projects/bob/train/runs/consumer/artifacts", bob, &ra); len(ra.Inputs) != 0 {
		t.Fatalf("a deleted input still shows: %+v", ra)
	}
	// The W&B lookups agree with the native API.
	if m := lb.gql("/graphql", bob, "", membershipQuery, map[string]any{"entity": "alice", "project": "artproj", "name": "dataset:best"}).ok(t); get(m.Data, "project", "artifactCollectionMembership") != nil {
		t.Fatalf("deleted version resolves over W&B: %v", m.Data)
	}
	if a := lb.artifactByID(bob, l1.id); get(a, "versionIndex") != 1.0 {
		t.Fatalf("v1 over W&B: %v", a)
	}

	// Time travel: the project before the delete had the collection too.
	var asof struct {
		Artifacts []struct {
			Name     string
			Versions int `json:"versions"`
		} `json:"artifacts"`
	}
	if st := lb.getJSON(base+"/asof?time="+url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano)), bob, &asof); st != 200 ||
		len(asof.Artifacts) != 1 || asof.Artifacts[0].Versions != 1 {
		t.Fatalf("asof: %d %+v", st, asof)
	}

	// A replay of the log gives the live read model's digest, and a
	// rebuild serves the same artifacts.
	var status struct {
		Verify struct {
			Equal bool `json:"equal"`
			Live  struct {
				Digest string `json:"digest"`
				Seq    uint64 `json:"seq"`
			} `json:"live"`
		} `json:"verify"`
	}
	lb.native(200, "GET", "/api/v1/admin/readmodel?verify=1", adminKey, nil, &status)
	if !status.Verify.Equal || status.Verify.Live.Digest == "" {
		t.Fatalf("verify: %+v", status)
	}
	st, body, _ := lb.getBytesAs("POST", "/api/v1/admin/readmodel/rebuild", adminKey)
	sc := bufio.NewScanner(bytes.NewReader(body))
	var last map[string]any
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &last)
	}
	if st != 200 || last["done"] != true || last["error"] != nil {
		t.Fatalf("rebuild: %d %s", st, body)
	}
	t.Logf("live %+v, rebuilt %v", status.Verify.Live, last["digest"])
	if d, _ := last["digest"].(map[string]any); d == nil || (d["seq"] == float64(status.Verify.Live.Seq) && d["digest"] != status.Verify.Live.Digest) {
		t.Fatalf("rebuilt at the same sequence with another digest: %v, live %+v", d, status.Verify.Live)
	}
	if lb.getJSON(base+"/artifacts/dataset/latest", bob, &va); va.ID != l1.id || va.Manifest == nil || len(va.Manifest.Contents) != 3 {
		t.Fatalf("after the rebuild: %+v", va)
	}
}

func (lb *logbook) getBytesAs(method, path, key string) (int, []byte, http.Header) {
	lb.t.Helper()
	req, _ := http.NewRequest(method, lb.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), resp.Header
}

// The Python SDK's LinkArtifact document (spec 3.7), and wandb-core's flat one.
const (
	linkQuery     = `mutation LinkArtifact($input: LinkArtifactInput!, $includeAliases: Boolean = false) { result: linkArtifact(input: $input) { versionIndex } }`
	coreLinkQuery = `mutation LinkArtifact($artifactPortfolioName: String!, $entityName: String!, $projectName: String!, $aliases: [ArtifactAliasInput!], $artifactId: ID, $clientId: ID) { linkArtifact(input: {artifactPortfolioName: $artifactPortfolioName, entityName: $entityName, projectName: $projectName, aliases: $aliases, artifactID: $artifactId, clientID: $clientId}) { versionIndex } }`
	orgInfoQuery  = `query FetchOrgInfoFromEntity($entity: String!) { entity(name: $entity) { organization { name orgEntity { name } } user { organizations { name orgEntity { name } } } } }`
)

// TestArtifactLinks: run.link_artifact into a portfolio of another
// project (created on the fly): the link's index, aliases moved within the
// portfolio, a second link of the same version answering the same index,
// the portfolio resolving by vN and alias over W&B (membership with the
// portfolio's index and aliases) and downloading the linked bytes, the
// same through the native API, a Viewer of the source without rights on
// the target refused, registries refused with a clear message.
func TestArtifactLinks(t *testing.T) {
	lb := mustLogbook(t)
	alice, bob := lb.newUser("alice"), lb.newUser("bob")
	lb.native(201, "POST", "/api/v1/projects", alice, map[string]string{"name": "artproj"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/artproj/members", alice, map[string]string{"username": "bob", "role": "viewer"}, nil)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "producer", "project": "artproj", "entity": "alice", "config": pyConfig})).ok(t)
	v0files := map[string]string{"w.bin": "weights 0"}
	v1files := map[string]string{"w.bin": "weights 1, better"}
	l0 := lb.logArtifact(alice, "alice", "artproj", "producer", "model", "model", v0files)
	l1 := lb.logArtifact(alice, "alice", "artproj", "producer", "model", "model", v1files)

	link := func(key, id string, aliases ...string) gqlAnswer {
		var al []any
		for _, a := range aliases {
			al = append(al, map[string]any{"artifactCollectionName": "models", "alias": a})
		}
		return lb.gql("/graphql", key, "", linkQuery, map[string]any{"input": map[string]any{"artifactID": id,
			"artifactPortfolioName": "models", "entityName": "alice", "projectName": "registry", "aliases": al}, "includeAliases": false})
	}
	if r := link(alice, l1.id, "staging").ok(t); get(r.Data, "result", "versionIndex") != 0.0 {
		t.Fatalf("first link: %v", r.Data)
	}
	if r := link(alice, l1.id, "staging").ok(t); get(r.Data, "result", "versionIndex") != 0.0 {
		t.Fatalf("same link again: %v", r.Data)
	}
	// wandb-core's flat form links v0 as the portfolio's v1, taking "latest".
	cl := lb.gql("/graphql", alice, "", coreLinkQuery, map[string]any{"artifactPortfolioName": "models", "entityName": "alice",
		"projectName": "registry", "aliases": []any{map[string]any{"artifactCollectionName": "models", "alias": "prod"}}, "artifactId": l0.id, "clientId": nil}).ok(t)
	if get(cl.Data, "linkArtifact", "versionIndex") != 1.0 {
		t.Fatalf("core link: %v", cl.Data)
	}
	for name, want := range map[string][2]any{"models:v0": {l1.id, 0.0}, "models:staging": {l1.id, 0.0}, "models:latest": {l0.id, 1.0}, "models:prod": {l0.id, 1.0}} {
		m := lb.gql("/graphql", alice, "", membershipQuery, map[string]any{"entity": "alice", "project": "registry", "name": name}).ok(t)
		ms := get(m.Data, "project", "artifactCollectionMembership")
		if get(ms, "artifact", "id") != want[0] || get(ms, "versionIndex") != want[1] || get(ms, "artifactCollection", "name") != "models" {
			t.Fatalf("%s: %v", name, ms)
		}
	}
	// The linked version keeps its own index and aliases.
	if a := lb.artifactByID(alice, l1.id); get(a, "versionIndex") != 1.0 || fmt.Sprint(aliasesOf(a)) != "[latest]" {
		t.Fatalf("v1 after the links: %v", a)
	}
	// Download through the portfolio, Python's way.
	fu := lb.gql("/graphql", alice, "", fileURLsQuery, map[string]any{"entity": "alice", "project": "registry", "collection": "models",
		"alias": "staging", "cursor": nil, "perPage": 10}).ok(t)
	edges := get(fu.Data, "project", "artifactCollection", "artifactMembership", "files", "edges").([]any)
	if len(edges) != 1 || string(lb.getURL(get(edges[0], "node", "directUrl").(string))) != v1files["w.bin"] {
		t.Fatalf("portfolio download: %v", edges)
	}
	// The native API: the portfolio, its links, a linked version's bytes.
	var cv struct {
		Collection struct {
			Name      string `json:"name"`
			Versions  int    `json:"versions"`
			Portfolio bool   `json:"portfolio"`
		} `json:"collection"`
		Versions []struct {
			ID   string `json:"id"`
			Link struct {
				Version string   `json:"version"`
				Aliases []string `json:"aliases"`
			} `json:"link"`
		} `json:"versions"`
	}
	lb.poll("the portfolio in the read model", func() (bool, string) {
		st := lb.getJSON("/api/v1/projects/alice/registry/artifacts/models", alice, &cv)
		return st == 200 && len(cv.Versions) == 2, fmt.Sprint(st, cv)
	})
	if cv.Versions[0].ID != l1.id || cv.Versions[0].Link.Version != "v0" || fmt.Sprint(cv.Versions[0].Link.Aliases) != "[staging]" ||
		cv.Versions[1].ID != l0.id || fmt.Sprint(cv.Versions[1].Link.Aliases) != "[latest prod]" || cv.Collection.Versions != 2 ||
		!cv.Collection.Portfolio {
		t.Fatalf("portfolio versions: %+v", cv)
	}
	if st, body, _ := lb.getBytes("/api/v1/projects/alice/registry/artifacts/models/staging/files/w.bin", alice); st != 200 || string(body) != v1files["w.bin"] {
		t.Fatalf("native download through the portfolio: %d %q", st, body)
	}
	// bob reads artproj but is not a member of registry: he may not link
	// into it, and does not see it.
	link(bob, l1.id, "mine").failed(t, "not a member")
	if st := lb.getJSON("/api/v1/projects/alice/registry/artifacts/models", bob, nil); st != 404 {
		t.Fatalf("bob reads the registry project: %d", st)
	}
	// A portfolio takes no versions of its own.
	ca := lb.gql("/graphql", alice, "CreateArtifact", createArtifactQuery, map[string]any{"input": map[string]any{"entityName": "alice", "projectName": "registry",
		"artifactTypeName": "model", "artifactCollectionName": "models", "digest": "x9"}})
	ca.failed(t, "portfolio")
	// Registries: refused with a reason.
	lb.gql("/graphql", alice, "", orgInfoQuery, map[string]any{"entity": "alice"}).failed(t, "registries")
}
