package e2e

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// logArtifact logs a one-file artifact version (collection name, file
// path with body) over the W&B protocol as key, in the order wandb-core
// sends it: CreateArtifact, CreateArtifactManifest, CreateArtifactFiles,
// PUT of the body, PUT of the manifest, CommitArtifact. It returns the
// version id.
func logArtifact(t *testing.T, base, key, entity, project, run, name, path string, body []byte) string {
	t.Helper()
	sum := md5.Sum(body)
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	d := md5.Sum([]byte("wandb-artifact-manifest-v1\n" + path + ":" + b64 + "\n"))
	gql := func(op, doc string, vars map[string]any) map[string]any {
		t.Helper()
		data, _ := json.Marshal(map[string]any{"query": doc, "variables": vars, "operationName": op})
		req, _ := http.NewRequest("POST", base+"/graphql", bytes.NewReader(data))
		req.SetBasicAuth("api", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Data   map[string]any `json:"data"`
			Errors []any          `json:"errors"`
		}
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &out); err != nil || len(out.Errors) > 0 || out.Data == nil {
			t.Fatalf("%s: %d %s", op, resp.StatusCode, raw)
		}
		return out.Data
	}
	put := func(u string, body []byte, md5 string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", u, bytes.NewReader(body))
		if md5 != "" {
			req.Header.Set("Content-MD5", md5)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %d", u, resp.StatusCode)
		}
	}
	at := func(v any, path ...string) any {
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				v = x[0]
			}
		}
		return v
	}
	ca := gql("CreateArtifact", `mutation CreateArtifact($input: CreateArtifactInput!) { createArtifact(input: $input) { artifact { id state } } }`,
		map[string]any{"input": map[string]any{"entityName": entity, "projectName": project, "artifactTypeName": "dataset",
			"artifactCollectionName": name, "runName": run, "digest": hex.EncodeToString(d[:]), "digestAlgorithm": "MANIFEST_MD5",
			"aliases": []any{map[string]any{"artifactCollectionName": name, "alias": "latest"}}, "enableDigestDeduplication": true}})
	id, _ := at(ca, "createArtifact", "artifact", "id").(string)
	m := gql("CreateArtifactManifest", `mutation CreateArtifactManifest($artifactID: ID!, $name: String!, $includeUpload: Boolean!) { createArtifactManifest { artifactManifest { id file { uploadUrl } } } }`,
		map[string]any{"artifactID": id, "baseArtifactID": nil, "name": "wandb_manifest.json", "digest": "", "entityName": entity,
			"projectName": project, "runName": run, "includeUpload": true, "type": "FULL"})
	manifestURL, _ := at(m, "createArtifactManifest", "artifactManifest", "file", "uploadUrl").(string)
	f := gql("CreateArtifactFiles", `mutation CreateArtifactFiles($storageLayout: ArtifactStorageLayout!, $artifactFiles: [CreateArtifactFileSpecInput!]!) { createArtifactFiles { files { edges { node { uploadUrl } } } } }`,
		map[string]any{"storageLayout": "V2", "artifactFiles": []any{map[string]any{"artifactID": id, "name": path, "md5": b64,
			"artifactManifestID": at(m, "createArtifactManifest", "artifactManifest", "id"), "mimetype": nil, "uploadPartsInput": nil}}})
	if u, ok := at(f, "createArtifactFiles", "files", "edges", "0", "node", "uploadUrl").(string); ok {
		put(u, body, b64)
	}
	manifest, _ := json.Marshal(map[string]any{"version": 1, "storagePolicy": "wandb-storage-policy-v1",
		"contents": map[string]any{path: map[string]any{"digest": b64, "size": len(body)}}})
	put(manifestURL, manifest, "")
	gql("CommitArtifact", `mutation CommitArtifact($artifactID: ID!) { commitArtifact(input: {artifactID: $artifactID}) { artifact { id } } }`,
		map[string]any{"artifactID": id})
	return id
}
