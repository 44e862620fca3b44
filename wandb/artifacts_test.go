package wandb_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// The documents wandb-core and the Python SDK send (artifacts spec, section 3).
const (
	artifactTypeQuery   = `query ArtifactType($entity: String, $project: String, $name: String!) { project(name: $project, entityName: $entity) { artifact(name: $name) { artifactType { name } } } }`
	createArtifactQuery = `mutation CreateArtifact($input: CreateArtifactInput!) { createArtifact(input: $input) { artifact { id state artifactSequence { latestArtifact { id } } } } }`
	createManifestQuery = `mutation CreateArtifactManifest($artifactID: ID!, $baseArtifactID: ID, $name: String!, $digest: String!, $entityName: String!, $projectName: String!, $runName: String!, $includeUpload: Boolean!, $type: ArtifactManifestType = FULL) { createArtifactManifest(input: {artifactID: $artifactID, baseArtifactID: $baseArtifactID, name: $name, digest: $digest, entityName: $entityName, projectName: $projectName, runName: $runName, type: $type}) { artifactManifest { id file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) } } } }`
	createFilesQuery2   = `mutation CreateArtifactFiles($storageLayout: ArtifactStorageLayout!, $artifactFiles: [CreateArtifactFileSpecInput!]!) { createArtifactFiles(input: {artifactFiles: $artifactFiles, storageLayout: $storageLayout}) { files { edges { node { id name displayName uploadUrl uploadHeaders uploadMultipartUrls { uploadID uploadUrlParts { partNumber uploadUrl } } storagePath artifact { id } } } } } }`
	commitQuery         = `mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest } } }`
	byIDQuery           = `query ArtifactByID($id: ID!, $includeAliases: Boolean = true) { artifact(id: $id) { id versionIndex state digest aliases { alias } } }`
	membershipQuery     = `query ArtifactMembershipByName($entity: String!, $project: String!, $name: String!) { project(name: $project, entityName: $entity) { artifactCollectionMembership(name: $name) { id versionIndex aliases { alias } artifactCollection { __typename name project { name entity { name } } } artifact { id versionIndex state digest fileCount } } } }`
	useQuery            = `mutation UseArtifact($entityName: String!, $projectName: String!, $runName: String!, $artifactID: ID!) { useArtifact(input: {entityName: $entityName, projectName: $projectName, runName: $runName, artifactID: $artifactID}) { artifact { id digest description state createdAt metadata } } }`
	fetchManifestQuery  = `query FetchArtifactManifest($id: ID!) { artifact(id: $id) { currentManifest { file { directUrl } } } }`
	fileURLsQuery       = `query GetArtifactMembershipFileUrls($entity: String!, $project: String!, $collection: String!, $alias: String!, $cursor: String, $perPage: Int) { project(name: $project, entityName: $entity) { artifactCollection(name: $collection) { __typename artifactMembership(aliasName: $alias) { files(after: $cursor, first: $perPage) { pageInfo { endCursor hasNextPage } edges { node { __typename name directUrl } } } } } } }`
	coreManifestQuery   = `query ArtifactManifest($artifact_id: ID!) { artifact(id: $artifact_id) { currentManifest { file { directUrl } } } }`
	coreFileURLsQuery   = `query ArtifactFileURLsByManifestEntries($id: ID!, $entries: [ArtifactManifestEntryInput!]!) { artifact(id: $id) { filesByManifestEntries(entries: $entries) { pageInfo { hasNextPage endCursor } edges { node { name directUrl } } } } }`
)

func b64md5(b []byte) string { s := md5.Sum(b); return base64.StdEncoding.EncodeToString(s[:]) }

// artifactDigest is W&B's digest of a manifest's entries (spec 5.3).
func artifactDigest(files map[string]string) string {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	b.WriteString("wandb-artifact-manifest-v1\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "%s:%s\n", p, b64md5([]byte(files[p])))
	}
	s := md5.Sum([]byte(b.String()))
	return hex.EncodeToString(s[:])
}

// logged is what logArtifact saw.
type logged struct {
	id, state string
	latest    any // artifactSequence.latestArtifact.id
	puts      int // file bodies uploaded
	birth     map[string]string
}

func (lb *logbook) put(u string, headers []any, body []byte) int {
	lb.t.Helper()
	req, _ := http.NewRequest("PUT", u, strings.NewReader(string(body)))
	for _, h := range headers {
		k, v, _ := strings.Cut(h.(string), ":")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lb.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (lb *logbook) getURL(u string) []byte {
	lb.t.Helper()
	resp, err := http.Get(u) // no Authorization: signed URLs authorize themselves
	if err != nil {
		lb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		lb.t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return b
}

// logArtifact replays wandb-core's log_artifact sequence (spec 2.1-2.3).
func (lb *logbook) logArtifact(key, entity, project, run, name, typ string, files map[string]string, aliases ...string) logged {
	t := lb.t
	t.Helper()
	lb.gql("/graphql", key, "", artifactTypeQuery, map[string]any{"entity": entity, "project": project, "name": name + ":latest"}).ok(t)
	var al []any
	for _, a := range append(aliases, "latest") {
		al = append(al, map[string]any{"artifactCollectionName": name, "alias": a})
	}
	digest := artifactDigest(files)
	ca := lb.gql("/graphql", key, "CreateArtifact", createArtifactQuery, map[string]any{"input": map[string]any{
		"entityName": entity, "projectName": project, "artifactTypeName": typ, "artifactCollectionName": name, "runName": run,
		"digest": digest, "digestAlgorithm": "MANIFEST_MD5", "description": nil, "aliases": al, "metadata": `{"rows":3}`,
		"ttlDurationSeconds": nil, "historyStep": nil, "enableDigestDeduplication": true, "distributedID": nil, "clientID": "c1",
		"sequenceClientID": "s1", "storageRegion": nil, "artifactCollectionNames": nil, "clientMutationId": nil, "labels": nil}}).ok(t)
	out := logged{id: get(ca.Data, "createArtifact", "artifact", "id").(string), state: get(ca.Data, "createArtifact", "artifact", "state").(string),
		latest: get(ca.Data, "createArtifact", "artifact", "artifactSequence", "latestArtifact", "id"), birth: map[string]string{}}
	if out.state == "COMMITTED" {
		return out
	}
	mv := map[string]any{"artifactID": out.id, "baseArtifactID": out.latest, "name": "wandb_manifest.json", "digest": "",
		"entityName": entity, "projectName": project, "runName": run, "includeUpload": false, "type": "FULL"}
	m1 := lb.gql("/graphql", key, "CreateArtifactManifest", createManifestQuery, mv).ok(t)
	manifestID := get(m1.Data, "createArtifactManifest", "artifactManifest", "id")
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var specs []any
	for _, p := range paths {
		specs = append(specs, map[string]any{"artifactID": out.id, "name": p, "md5": b64md5([]byte(files[p])),
			"artifactManifestID": manifestID, "mimetype": nil, "uploadPartsInput": nil})
	}
	cf := lb.gql("/graphql", key, "CreateArtifactFiles", createFilesQuery2, map[string]any{"storageLayout": "V2", "artifactFiles": specs}).ok(t)
	edges := get(cf.Data, "createArtifactFiles", "files", "edges").([]any)
	if len(edges) != len(paths) {
		t.Fatalf("CreateArtifactFiles: %d nodes for %d files", len(edges), len(paths))
	}
	contents := map[string]any{}
	for i, e := range edges {
		n := get(e, "node")
		if u, ok := get(n, "uploadUrl").(string); ok {
			if st := lb.put(u, get(n, "uploadHeaders").([]any), []byte(files[paths[i]])); st != 200 {
				t.Fatalf("PUT %s: %d", paths[i], st)
			}
			out.puts++
		}
		out.birth[paths[i]] = get(n, "artifact", "id").(string)
		contents[paths[i]] = map[string]any{"digest": b64md5([]byte(files[paths[i]])), "size": len(files[paths[i]]),
			"local_path": "/tmp/staging/" + paths[i], "birthArtifactID": out.birth[paths[i]], "skip_cache": false}
	}
	man, _ := json.Marshal(map[string]any{"version": 1, "storagePolicy": "wandb-storage-policy-v1",
		"storagePolicyConfig": map[string]any{"storageLayout": "V2"}, "contents": contents})
	mv["digest"], mv["includeUpload"] = b64md5(man), true
	m2 := lb.gql("/graphql", key, "CreateArtifactManifest", createManifestQuery, mv).ok(t)
	if get(m2.Data, "createArtifactManifest", "artifactManifest", "id") != manifestID {
		t.Fatalf("second CreateArtifactManifest gave another id: %v", m2.Data)
	}
	if st := lb.put(get(m2.Data, "createArtifactManifest", "artifactManifest", "file", "uploadUrl").(string), nil, man); st != 200 {
		t.Fatalf("manifest PUT: %d", st)
	}
	lb.gql("/graphql", key, "CommitArtifact", commitQuery, map[string]any{"artifactID": out.id}).ok(t)
	return out
}

func (lb *logbook) artifactByID(key, id string) any {
	return get(lb.gql("/graphql", key, "", byIDQuery, map[string]any{"id": id, "includeAliases": true}).ok(lb.t).Data, "artifact")
}

func aliasesOf(v any) []string {
	var out []string
	list, _ := get(v, "aliases").([]any)
	for _, a := range list {
		out = append(out, get(a, "alias").(string))
	}
	sort.Strings(out)
	return out
}

// TestArtifacts replays the artifacts spec's verified sequences: log, re-log
// unchanged, log changed, lookup by alias and vN, use from another run in
// another project, download (Python's and wandb-core's ways) with byte
// comparison, roles, delete and garbage collection.
func TestArtifacts(t *testing.T) {
	lb := mustLogbook(t)
	alice, bob, mallory := lb.newUser("alice"), lb.newUser("bob"), lb.newUser("mallory")
	lb.native(201, "POST", "/api/v1/projects", alice, map[string]string{"name": "artproj"}, nil)
	lb.native(200, "POST", "/api/v1/projects/alice/artproj/members", alice, map[string]string{"username": "bob", "role": "viewer"}, nil)
	lb.gql("/graphql", alice, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "producer", "project": "artproj", "entity": "alice", "config": pyConfig})).ok(t)

	// 1. A new artifact: v0, every file uploaded, "best" and "latest".
	v0files := map[string]string{"a.txt": "hello world", "b.txt": "first b", "sub/c.txt": strings.Repeat("c", 5000)}
	l0 := lb.logArtifact(alice, "alice", "artproj", "producer", "dataset", "dataset", v0files, "best")
	if l0.state != "PENDING" || l0.latest != nil || l0.puts != 3 {
		t.Fatalf("first log: %+v", l0)
	}
	a0 := lb.artifactByID(alice, l0.id)
	if get(a0, "versionIndex") != 0.0 || get(a0, "state") != "COMMITTED" || fmt.Sprint(aliasesOf(a0)) != "[best latest]" {
		t.Fatalf("v0 = %v", a0)
	}

	// 2. Unchanged content again: the existing version, nothing uploaded;
	// the re-log's alias now points at it.
	l0b := lb.logArtifact(alice, "alice", "artproj", "producer", "dataset", "dataset", v0files, "prod")
	if l0b.state != "COMMITTED" || l0b.id != l0.id || l0b.puts != 0 {
		t.Fatalf("unchanged re-log: %+v", l0b)
	}
	if a := lb.artifactByID(alice, l0.id); get(a, "versionIndex") != 0.0 || fmt.Sprint(aliasesOf(a)) != "[best latest prod]" {
		t.Fatalf("v0 after the re-log: %v", a)
	}

	// 3. One file changed: v1, only that file uploaded, unchanged ones
	// answered with the birth version; latest moves, best stays.
	v1files := map[string]string{"a.txt": "hello world", "b.txt": "second b, changed", "sub/c.txt": strings.Repeat("c", 5000)}
	l1 := lb.logArtifact(alice, "alice", "artproj", "producer", "dataset", "dataset", v1files)
	if l1.state != "PENDING" || l1.latest != l0.id || l1.puts != 1 || l1.birth["a.txt"] != l0.id || l1.birth["b.txt"] != l1.id {
		t.Fatalf("changed log: %+v", l1)
	}
	a1 := lb.artifactByID(alice, l1.id)
	if get(a1, "versionIndex") != 1.0 || fmt.Sprint(aliasesOf(a1)) != "[latest]" || fmt.Sprint(aliasesOf(lb.artifactByID(alice, l0.id))) != "[best prod]" {
		t.Fatalf("after v1: v1 %v, v0 %v", a1, lb.artifactByID(alice, l0.id))
	}

	// 4. Lookup by alias and by version, also by a Viewer.
	for name, want := range map[string]string{"dataset:latest": l1.id, "dataset:best": l0.id, "dataset:v0": l0.id, "dataset:v1": l1.id, "dataset": l1.id} {
		m := lb.gql("/graphql", bob, "", membershipQuery, map[string]any{"entity": "alice", "project": "artproj", "name": name}).ok(t)
		if got := get(m.Data, "project", "artifactCollectionMembership", "artifact", "id"); got != want {
			t.Fatalf("%s resolved to %v, want %s: %v", name, got, want, m.Data)
		}
	}
	if m := lb.gql("/graphql", bob, "", membershipQuery, map[string]any{"entity": "alice", "project": "artproj", "name": "dataset:v2"}).ok(t); get(m.Data, "project", "artifactCollectionMembership") != nil {
		t.Fatalf("v2 resolved: %v", m.Data)
	}

	// 5. bob uses dataset:best in his own project's run (lineage), then
	// downloads it the way Python does, byte for byte.
	lb.gql("/graphql", bob, "UpsertBucket", upsertQuery, upsertVars(map[string]any{"name": "consumer", "project": "train", "entity": "bob", "config": pyConfig})).ok(t)
	u := lb.gql("/graphql", bob, "", useQuery, map[string]any{"entityName": "bob", "projectName": "train", "runName": "consumer", "artifactID": l0.id, "usedAs": nil}).ok(t)
	if get(u.Data, "useArtifact", "artifact", "id") != l0.id {
		t.Fatalf("UseArtifact = %v", u.Data)
	}
	fm := lb.gql("/graphql", bob, "", fetchManifestQuery, map[string]any{"id": l0.id}).ok(t)
	var man struct {
		Contents map[string]struct {
			Digest string `json:"digest"`
		} `json:"contents"`
	}
	if err := json.Unmarshal(lb.getURL(get(fm.Data, "artifact", "currentManifest", "file", "directUrl").(string)), &man); err != nil || len(man.Contents) != 3 {
		t.Fatalf("manifest %+v %v", man, err)
	}
	fu := lb.gql("/graphql", bob, "", fileURLsQuery, map[string]any{"entity": "alice", "project": "artproj", "collection": "dataset",
		"alias": "best", "cursor": nil, "perPage": 2}).ok(t)
	got := map[string]string{}
	for page := 0; ; page++ {
		files := get(fu.Data, "project", "artifactCollection", "artifactMembership", "files")
		for _, e := range get(files, "edges").([]any) {
			name := get(e, "node", "name").(string)
			body := lb.getURL(get(e, "node", "directUrl").(string))
			if b64md5(body) != man.Contents[name].Digest {
				t.Fatalf("%s: MD5 differs from the manifest", name)
			}
			got[name] = string(body)
		}
		if get(files, "pageInfo", "hasNextPage") != true {
			break
		}
		fu = lb.gql("/graphql", bob, "", fileURLsQuery, map[string]any{"entity": "alice", "project": "artproj", "collection": "dataset",
			"alias": "best", "cursor": get(files, "pageInfo", "endCursor"), "perPage": 2}).ok(t)
	}
	if fmt.Sprint(got) != fmt.Sprint(v0files) {
		t.Fatalf("downloaded %v", got)
	}
	// wandb-core's own download path for v1.
	cm := lb.gql("/graphql", bob, "", coreManifestQuery, map[string]any{"artifact_id": l1.id}).ok(t)
	lb.getURL(get(cm.Data, "artifact", "currentManifest", "file", "directUrl").(string))
	var entries []any
	for p := range v1files {
		entries = append(entries, map[string]any{"name": p, "digest": b64md5([]byte(v1files[p])), "birthArtifactID": nil, "size": len(v1files[p]), "ref": nil})
	}
	ce := lb.gql("/graphql", bob, "", coreFileURLsQuery, map[string]any{"id": l1.id, "entries": entries, "storageLayout": "V2", "manifestVersion": "1", "storageRegion": nil}).ok(t)
	for _, e := range get(ce.Data, "artifact", "filesByManifestEntries", "edges").([]any) {
		if b := lb.getURL(get(e, "node", "directUrl").(string)); string(b) != v1files[get(e, "node", "name").(string)] {
			t.Fatalf("core download of %v", get(e, "node", "name"))
		}
	}

	// 6. Roles: a Viewer may not create, a non-member sees nothing.
	ca := lb.gql("/graphql", bob, "CreateArtifact", createArtifactQuery, map[string]any{"input": map[string]any{"entityName": "alice", "projectName": "artproj",
		"artifactTypeName": "dataset", "artifactCollectionName": "dataset", "runName": nil, "digest": "x1", "aliases": nil, "enableDigestDeduplication": true}})
	ca.failed(t, "Viewer")
	if m := lb.gql("/graphql", mallory, "", membershipQuery, map[string]any{"entity": "alice", "project": "artproj", "name": "dataset:best"}).ok(t); get(m.Data, "project") != nil {
		t.Fatalf("non-member sees %v", m.Data)
	}
	lb.gql("/graphql", mallory, "", useQuery, map[string]any{"entityName": "mallory", "projectName": "x", "runName": "r", "artifactID": l0.id}).failed(t, "does not exist")
	if a := get(lb.gql("/graphql", mallory, "", byIDQuery, map[string]any{"id": l0.id}).ok(t).Data, "artifact"); a != nil {
		t.Fatalf("non-member reads %v", a)
	}
	// A type clash is refused.
	lb.gql("/graphql", alice, "CreateArtifact", createArtifactQuery, map[string]any{"input": map[string]any{"entityName": "alice", "projectName": "artproj",
		"artifactTypeName": "model", "artifactCollectionName": "dataset", "digest": "x2"}}).failed(t, "type")
	// A commit whose files were never uploaded is refused (no silent loss).
	missing := map[string]string{"never.txt": "never uploaded"}
	ca = lb.gql("/graphql", alice, "CreateArtifact", createArtifactQuery, map[string]any{"input": map[string]any{"entityName": "alice", "projectName": "artproj",
		"artifactTypeName": "dataset", "artifactCollectionName": "broken", "digest": artifactDigest(missing)}}).ok(t)
	bid := get(ca.Data, "createArtifact", "artifact", "id").(string)
	mv := map[string]any{"artifactID": bid, "name": "wandb_manifest.json", "digest": "", "entityName": "alice", "projectName": "artproj", "runName": nil, "includeUpload": true}
	m2 := lb.gql("/graphql", alice, "CreateArtifactManifest", createManifestQuery, mv).ok(t)
	man2, _ := json.Marshal(map[string]any{"version": 1, "contents": map[string]any{"never.txt": map[string]any{"digest": b64md5([]byte(missing["never.txt"])), "size": 14}}})
	lb.put(get(m2.Data, "createArtifactManifest", "artifactManifest", "file", "uploadUrl").(string), nil, man2)
	lb.gql("/graphql", alice, "CommitArtifact", commitQuery, map[string]any{"artifactID": bid}).failed(t, "never uploaded")
	// A body that does not match its MD5 is refused.
	fake := lb.gql("/graphql", alice, "CreateArtifactFiles", createFilesQuery2, map[string]any{"storageLayout": "V2", "artifactFiles": []any{
		map[string]any{"artifactID": bid, "name": "never.txt", "md5": b64md5([]byte(missing["never.txt"])), "artifactManifestID": "m"}}}).ok(t)
	if st := lb.put(get(get(fake.Data, "createArtifactFiles", "files", "edges").([]any)[0], "node", "uploadUrl").(string), nil, []byte("other bytes")); st != 400 {
		t.Fatalf("PUT of a body with another MD5: %d", st)
	}

	// 7. Delete and garbage collection. v0 holds aliases: refused unless
	// forced; bob (Viewer) may not. After deleting v0 its name no longer
	// resolves; GC removes only the body v0 alone named ("first b") and
	// keeps the ones v1 shares; v1 still downloads.
	if st, _ := lb.call("DELETE", "/api/v1/projects/alice/artproj/artifacts/"+l0.id, "Bearer "+alice, nil); st != 409 {
		t.Fatalf("delete of a version with aliases: %d", st)
	}
	if st, _ := lb.call("DELETE", "/api/v1/projects/alice/artproj/artifacts/"+l0.id+"?force=true", "Bearer "+bob, nil); st != 403 {
		t.Fatalf("delete by a Viewer: %d", st)
	}
	lb.native(200, "DELETE", "/api/v1/projects/alice/artproj/artifacts/"+l0.id+"?force=true", alice, nil, nil)
	if m := lb.gql("/graphql", alice, "", membershipQuery, map[string]any{"entity": "alice", "project": "artproj", "name": "dataset:best"}).ok(t); get(m.Data, "project", "artifactCollectionMembership") != nil {
		t.Fatalf("deleted version resolves: %v", m.Data)
	}
	if st, _ := lb.call("POST", "/api/v1/artifacts/gc?grace=0s", basic(alice), nil); st != 403 {
		t.Fatalf("gc by a non-admin: %d", st)
	}
	var gc struct {
		Deleted int   `json:"deleted"`
		Freed   int64 `json:"freed_bytes"`
	}
	lb.native(200, "POST", "/api/v1/artifacts/gc?grace=0s", adminKey, nil, &gc)
	// v0's manifest and "first b"; and the pending "broken" version keeps
	// its manifest (pending versions are live).
	if gc.Deleted != 2 {
		t.Fatalf("gc deleted %+v", gc)
	}
	fu = lb.gql("/graphql", bob, "", fileURLsQuery, map[string]any{"entity": "alice", "project": "artproj", "collection": "dataset", "alias": "latest", "cursor": nil, "perPage": 10}).ok(t)
	for _, e := range get(fu.Data, "project", "artifactCollection", "artifactMembership", "files", "edges").([]any) {
		if b := lb.getURL(get(e, "node", "directUrl").(string)); string(b) != v1files[get(e, "node", "name").(string)] {
			t.Fatalf("v1 after gc: %v", get(e, "node", "name"))
		}
	}
	lb.native(200, "POST", "/api/v1/artifacts/gc?grace=0s", adminKey, nil, &gc)
	if gc.Deleted != 0 {
		t.Fatalf("second gc deleted %+v", gc)
	}
}
