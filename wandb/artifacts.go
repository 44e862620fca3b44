package wandb

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// ArtifactStore keeps artifact file bodies, one object per content digest
// ("objects/<hex md5>"), and each version's manifest ("manifests/<id>")
// (package bus implements it with a JetStream object store). Versions,
// aliases and lineage are events in the log; the store keeps bytes only.
type ArtifactStore interface {
	Secret(ctx context.Context) ([]byte, error)
	// PutVerified stores body under name if its MD5 (base64) is wantMD5,
	// never replacing what name holds.
	PutVerified(ctx context.Context, name string, body io.Reader, wantMD5 string, meta map[string]string) (query.FileInfo, error)
	PutObject(ctx context.Context, name string, body io.Reader, meta map[string]string) (query.FileInfo, error)
	Stat(ctx context.Context, name string) (query.FileInfo, bool, error)
	Delete(ctx context.Context, name string) error
	query.FileStore
}

// WithArtifacts gives the adapter its artifact store.
func (s *Server) WithArtifacts(a ArtifactStore) *Server {
	s.arts = a
	return s
}

func (s *Server) registerArtifacts(mux *http.ServeMux) {
	mux.HandleFunc("PUT /artifacts-upload/{kind}/{name}", s.artifactUpload)
	mux.HandleFunc("GET /artifacts-download/{kind}/{name}", s.artifactDownload)
	mux.HandleFunc("POST /api/v1/artifacts/gc", s.collectGarbage)
}

func objectName(hexMD5 string) string { return "objects/" + hexMD5 }
func manifestName(id string) string   { return "manifests/" + id }

// signArtifact signs a method on an artifact store object (and the birth
// artifact id an object upload records).
func signArtifact(secret []byte, method, obj, birth string, expires int64) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "artifact\n%s\n%s\n%s\n%d", method, obj, birth, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// artifactURL is a signed URL of an artifact object or manifest.
func (s *Server) artifactURL(r *http.Request, method, kind, name, birth string) (string, error) {
	secret, err := s.arts.Secret(r.Context())
	if err != nil {
		return "", err
	}
	expires := time.Now().Add(UploadURLTTL).Unix()
	path := "/artifacts-upload/"
	if method == "GET" {
		path = "/artifacts-download/"
	}
	u := baseURL(r) + path + kind + "/" + url.PathEscape(name) + "?expires=" + strconv.FormatInt(expires, 10)
	if birth != "" {
		u += "&birth=" + url.QueryEscape(birth)
	}
	return u + "&sig=" + signArtifact(secret, method, kind+"/"+name, birth, expires), nil
}

// checkSigned verifies a signed artifact URL.
func (s *Server) checkSigned(w http.ResponseWriter, r *http.Request, method string) (kind, name string, ok bool) {
	kind, name = r.PathValue("kind"), r.PathValue("name")
	if (kind != "objects" && kind != "manifests") || name == "" || strings.ContainsAny(name, "/\x00") {
		lbhttp.WriteError(w, s.log, errs.New(errs.NotFound, "not_found", "no such artifact object"))
		return "", "", false
	}
	secret, err := s.arts.Secret(r.Context())
	if err != nil {
		lbhttp.WriteError(w, s.log, errs.New(errs.Unavailable, "unavailable", "artifact storage is unavailable; retry later"))
		return "", "", false
	}
	q := r.URL.Query()
	expires, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err != nil || !hmac.Equal([]byte(q.Get("sig")), []byte(signArtifact(secret, method, kind+"/"+name, q.Get("birth"), expires))) {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "forbidden", "the URL's signature is invalid; ask for a new one"))
		return "", "", false
	}
	if time.Now().Unix() > expires {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "expired", "the URL expired; ask for a new one"))
		return "", "", false
	}
	return kind, name, true
}

// artifactUpload stores a file body (its name is its hex MD5, checked) or
// a pending version's manifest, PUT to a signed URL.
func (s *Server) artifactUpload(w http.ResponseWriter, r *http.Request) {
	kind, name, ok := s.checkSigned(w, r, "PUT")
	if !ok {
		return
	}
	body := http.MaxBytesReader(w, r.Body, MaxUploadBytes)
	var err error
	if kind == "objects" {
		raw, derr := hex.DecodeString(name)
		if derr != nil || len(raw) != md5.Size {
			lbhttp.WriteError(w, s.log, errs.New(errs.Invalid, "invalid", "object name must be a hex MD5"))
			return
		}
		_, err = s.arts.PutVerified(r.Context(), objectName(name), body, base64.StdEncoding.EncodeToString(raw),
			map[string]string{"birth": r.URL.Query().Get("birth")})
	} else {
		if a, ok := s.artifactState(name); !ok || a.State != policy.ArtifactPending {
			lbhttp.WriteError(w, s.log, errs.New(errs.Conflict, "artifact_not_pending", "artifact %s is not pending: its manifest is fixed", name))
			return
		}
		_, err = s.arts.PutObject(r.Context(), manifestName(name), io.LimitReader(body, maxManifestBytes), nil)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if e, ok := errs.As(err); ok {
			lbhttp.WriteError(w, s.log, e)
		} else if errors.As(err, &mbe) {
			lbhttp.WriteError(w, s.log, errs.New(errs.TooLarge, "too_large", "files are limited to %d bytes", int64(MaxUploadBytes)))
		} else {
			s.log.Error("store artifact object", "name", name, "err", err)
			lbhttp.WriteError(w, s.log, errs.New(errs.Unavailable, "unavailable", "could not store the file; retry later"))
		}
		return
	}
	lbhttp.WriteJSON(w, http.StatusOK, map[string]any{})
}

// artifactDownload answers a file body or a manifest to a signed URL.
func (s *Server) artifactDownload(w http.ResponseWriter, r *http.Request) {
	kind, name, ok := s.checkSigned(w, r, "GET")
	if !ok {
		return
	}
	obj := objectName(name)
	if kind == "manifests" {
		obj = manifestName(name)
	}
	rc, fi, err := s.arts.Get(r.Context(), obj)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	defer rc.Close()
	lbhttp.ServeBlob(w, name, fi.Size, fi.MD5, rc)
}

const maxManifestBytes = 64 << 20

// artifactState returns a copy of a version as the policy state has it.
func (s *Server) artifactState(id string) (policy.Artifact, bool) {
	var out policy.Artifact
	ok := false
	s.in.View(func(st *policy.State) {
		if a, _ := st.Artifact(id); a != nil {
			out, ok = copyArtifact(a), true
		}
	})
	return out, ok
}

func copyArtifact(a *policy.Artifact) policy.Artifact {
	c := *a
	c.Aliases = slices.Clone(a.Aliases)
	c.Requested = slices.Clone(a.Requested)
	c.Objects = slices.Clone(a.Objects)
	c.UsedBy = slices.Clone(a.UsedBy)
	return c
}

// readable returns the version id (or entity/project/collection:alias)
// names, if c may read its project: a non-member learns nothing.
func (s *Server) readable(c *caller, fn func(st *policy.State) *policy.Artifact) (a policy.Artifact, latest string, ok bool) {
	s.in.View(func(st *policy.State) {
		v := fn(st)
		if v == nil {
			return
		}
		p, exists := st.Project(v.Entity, v.Project)
		if !exists || !policy.Allowed(st.Role(c.user.Username, p), policy.ReadProject) {
			return
		}
		a, ok = copyArtifact(v), true
		if l := p.Collections[v.Collection].Version(st, "latest"); l != nil {
			latest = l.ID
		}
	})
	return a, latest, ok
}

// writable reports whether c may write artifacts in a's project.
func (s *Server) writable(c *caller, a policy.Artifact) bool {
	ok := false
	s.in.View(func(st *policy.State) {
		p, exists := st.Project(a.Entity, a.Project)
		ok = exists && policy.Allowed(st.Role(c.user.Username, p), policy.CreateArtifact)
	})
	return ok
}

func byID(id string) func(st *policy.State) *policy.Artifact {
	return func(st *policy.State) *policy.Artifact { a, _ := st.Artifact(id); return a }
}

// splitName splits "name:alias" (alias "latest" when none).
func splitName(n string) (coll, alias string) {
	coll, alias, ok := strings.Cut(n, ":")
	if !ok || alias == "" {
		alias = "latest"
	}
	return coll, alias
}

func wbTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

func projectNode(entity, project string) map[string]any {
	return map[string]any{"__typename": "Project", "id": gid("Project", entity+"/"+project), "internalId": gid("Project", entity+"/"+project),
		"name": project, "entity": map[string]any{"__typename": "Entity", "id": gid("Entity", entity), "name": entity}}
}

func sequenceNode(a policy.Artifact) map[string]any {
	return map[string]any{"__typename": "ArtifactSequence", "id": gid("ArtifactSequence", a.Entity+"/"+a.Project+"/"+a.Collection),
		"name": a.Collection, "project": projectNode(a.Entity, a.Project)}
}

// fragment is W&B's ArtifactFragment of a version.
func fragment(a policy.Artifact) map[string]any {
	aliases := []any{}
	for _, al := range a.Aliases {
		aliases = append(aliases, map[string]any{"__typename": "ArtifactAlias", "id": gid("ArtifactAlias", a.ID+":"+al), "alias": al,
			"artifactCollection": sequenceNode(a)})
	}
	var index, desc any
	if a.Index >= 0 {
		index = a.Index
	}
	if a.Description != "" {
		desc = a.Description
	}
	meta := "{}"
	if len(a.Metadata) > 0 {
		meta = string(a.Metadata)
	}
	updated := a.Created
	if !a.Committed.IsZero() {
		updated = a.Committed
	}
	return map[string]any{"__typename": "Artifact", "id": a.ID, "artifactSequence": sequenceNode(a), "versionIndex": index,
		"artifactType": map[string]any{"__typename": "ArtifactType", "name": a.Type}, "description": desc, "metadata": meta,
		"ttlDurationSeconds": -2, "ttlIsInherited": true, "tags": []any{}, "historyStep": nil, "state": a.State,
		"size": a.Size, "digest": a.Digest, "commitHash": a.Digest[:min(12, len(a.Digest))], "fileCount": a.FileCount,
		"createdAt": wbTime(a.Created), "updatedAt": wbTime(updated), "aliases": aliases}
}

func membership(a policy.Artifact) map[string]any {
	aliases := []any{}
	for _, al := range a.Aliases {
		aliases = append(aliases, map[string]any{"__typename": "ArtifactAlias", "id": gid("ArtifactAlias", a.ID+":"+al), "alias": al})
	}
	return map[string]any{"__typename": "ArtifactCollectionMembership", "id": gid("ArtifactCollectionMembership", a.ID),
		"versionIndex": a.Index, "aliases": aliases, "artifactCollection": sequenceNode(a), "artifact": fragment(a)}
}

// artifactOp serves the artifact operations; ok is false for other ones.
func (s *Server) artifactOp(r *http.Request, c *caller, op string, v vars) (data any, err error, ok bool) {
	if s.arts == nil {
		switch op {
		case "ArtifactType", "CreateArtifact", "CreateArtifactManifest", "CreateArtifactFiles", "CommitArtifact", "ArtifactByID",
			"ArtifactMembershipByName", "UseArtifact", "FetchArtifactManifest", "ArtifactManifest", "GetArtifactMembershipFileUrls",
			"ArtifactFileURLsByManifestEntries", "LinkArtifact":
			return nil, gqlErrorf("unsupported", "artifacts are not configured on this Logbook"), true
		}
		return nil, nil, false
	}
	switch op {
	case "ArtifactType":
		data, err = s.artifactType(r.Context(), c, v)
	case "CreateArtifact":
		data, err = s.createArtifact(r.Context(), c, v)
	case "CreateArtifactManifest":
		data, err = s.createArtifactManifest(r, c, v)
	case "CreateArtifactFiles":
		data, err = s.createArtifactFiles(r, c, v)
	case "CommitArtifact":
		data, err = s.commitArtifact(r.Context(), c, v)
	case "ArtifactByID":
		id, _, _ := v.str("id")
		a, found, _, err := s.lookup(r.Context(), c, idReq(id))
		if err != nil || !found || a.State == policy.ArtifactDeleted {
			return map[string]any{"artifact": nil}, err, true
		}
		data = map[string]any{"artifact": fragment(a)}
	case "ArtifactMembershipByName":
		data, err = s.membershipByName(r.Context(), c, v)
	case "UseArtifact":
		data, err = s.useArtifact(r.Context(), c, v)
	case "FetchArtifactManifest", "ArtifactManifest":
		data, err = s.fetchManifest(r, c, v)
	case "GetArtifactMembershipFileUrls":
		data, err = s.membershipFileURLs(r, c, v)
	case "ArtifactFileURLsByManifestEntries":
		data, err = s.fileURLsByEntries(r, c, v)
	case "LinkArtifact":
		data, err = s.linkArtifact(r.Context(), c, v)
	case "FetchOrgInfoFromEntity", "FetchOrgEntityFromEntity":
		err = gqlErrorf("unsupported", "artifact registries (wandb-registry-* projects of an organization) are not supported: Logbook has no organizations; link to a portfolio in a project instead")
	default:
		return nil, nil, false
	}
	return data, err, true
}

func (s *Server) artifactType(ctx context.Context, c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str("project")
	name, _, _ := v.str("name")
	coll, _ := splitName(name)
	if entity == "" {
		entity = c.user.Username
	}
	typ, visible, err := s.collectionType(ctx, c, entity, project, coll)
	if err != nil {
		return nil, err
	}
	if !visible {
		return map[string]any{"project": nil}, nil
	}
	var art any
	if typ != "" {
		art = map[string]any{"artifactType": map[string]any{"name": typ}}
	}
	return map[string]any{"project": map[string]any{"artifact": art}}, nil
}

// input reads the object variable $input.
func (v vars) input() (vars, error) {
	raw, ok := v["input"]
	if !ok || string(raw) == "null" {
		return vars{}, nil
	}
	var in vars
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("variable $input must be an object")
	}
	return in, nil
}

// artifactInput is CreateArtifact's $input, checked.
type artifactInput struct {
	entity, project, typ, coll, run, digest, desc string
	meta                                          json.RawMessage
	aliases                                       []string
	dedup                                         bool
}

func parseArtifactInput(c *caller, v vars) (a artifactInput, err error) {
	in, err := v.input()
	if err != nil {
		return a, gqlErrorf("invalid", "%v", err)
	}
	a.entity, _, _ = in.str("entityName")
	a.project, _, _ = in.str("projectName")
	a.typ, _, _ = in.str("artifactTypeName")
	a.coll, _, _ = in.str("artifactCollectionName")
	a.run, _, _ = in.str("runName")
	a.digest, _, _ = in.str("digest")
	a.desc, _, _ = in.str("description")
	if meta, ok, _ := in.str("metadata"); ok && meta != "" && meta != "null" {
		a.meta = json.RawMessage(meta)
	}
	a.entity = cmp.Or(a.entity, c.user.Username)
	a.project = cmp.Or(a.project, DefaultProject)
	if err := events.ValidateEntity(a.entity); err != nil {
		return a, gqlErrorf("invalid", "%v", err)
	}
	if err := events.ValidateProject(a.project); err != nil {
		return a, gqlErrorf("invalid", "%v", err)
	}
	if raw, ok := in["aliases"]; ok && string(raw) != "null" {
		var list []struct {
			Alias string `json:"alias"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return a, gqlErrorf("invalid", "aliases must be a list of {artifactCollectionName, alias}")
		}
		for _, al := range list {
			if !slices.Contains(a.aliases, al.Alias) {
				a.aliases = append(a.aliases, al.Alias)
			}
		}
	}
	raw, ok := in["enableDigestDeduplication"]
	a.dedup = !ok || string(raw) != "false"
	return a, nil
}

// dedupHit returns the committed version of the collection with the same
// digest and type (an unchanged re-log), and the collection's latest.
func (s *Server) dedupHit(c *caller, in artifactInput) (hit *policy.Artifact, latest string) {
	s.in.View(func(st *policy.State) {
		p, ok := st.Project(in.entity, in.project)
		if !ok || p.Collections[in.coll] == nil || !policy.Allowed(st.Role(c.user.Username, p), policy.CreateArtifact) {
			return
		}
		col := p.Collections[in.coll]
		if col.Portfolio {
			return // links, not versions of its own: CreateArtifact refuses
		}
		for i := len(col.Versions) - 1; i >= 0 && hit == nil; i-- {
			if a := policyArtifact(st, col.Versions[i]); a != nil && a.State == policy.ArtifactCommitted && a.Digest == in.digest && a.Type == in.typ {
				cp := copyArtifact(a)
				hit = &cp
			}
		}
		if l := col.Version(st, "latest"); l != nil {
			latest = l.ID
		}
	})
	return hit, latest
}

// createArtifact creates a pending version, or answers the committed one
// with the same content (which gets the new aliases; "latest" stays with
// the newest version).
func (s *Server) createArtifact(ctx context.Context, c *caller, v vars) (any, error) {
	in, err := parseArtifactInput(c, v)
	if err != nil {
		return nil, err
	}
	if !s.in.Run(in.entity, in.project, "").ProjectExists {
		if err := s.createProject(ctx, c, in.entity, in.project); err != nil {
			return nil, err
		}
	}
	if in.dedup {
		if hit, latest := s.dedupHit(c, in); hit != nil {
			if add := slices.DeleteFunc(slices.Clone(in.aliases), func(x string) bool { return x == "latest" }); len(add) > 0 {
				if err := s.proposeArtifact(ctx, c, events.Event{Entity: in.entity, Project: in.project,
					Payload: events.ArtifactAliasesAddedV1{ArtifactID: hit.ID, Aliases: add}}); err != nil {
					return nil, err
				}
			}
			return createdAnswer(hit.ID, policy.ArtifactCommitted, latest), nil
		}
	}
	pl := events.ArtifactCreatedV1{ArtifactID: events.NewID(time.Now()), Collection: in.coll, Type: in.typ, Digest: in.digest,
		Run: in.run, Aliases: in.aliases, Description: in.desc, Metadata: in.meta}
	if err := s.proposeArtifact(ctx, c, events.Event{Entity: in.entity, Project: in.project, Payload: pl}); err != nil {
		return nil, err
	}
	_, latest := s.dedupHit(c, artifactInput{entity: in.entity, project: in.project, coll: in.coll})
	return createdAnswer(pl.ArtifactID, policy.ArtifactPending, latest), nil
}

// proposeArtifact proposes an artifact event and waits for the decision.
func (s *Server) proposeArtifact(ctx context.Context, c *caller, ev events.Event) error {
	_, rej, err := s.propose(ctx, c, ev, true)
	if err != nil {
		return err
	}
	if rej != nil {
		return refused(rej)
	}
	return nil
}

func policyArtifact(st *policy.State, id string) *policy.Artifact { a, _ := st.Artifact(id); return a }

func createdAnswer(id, state, latest string) map[string]any {
	var l any
	if latest != "" {
		l = map[string]any{"id": latest}
	}
	return map[string]any{"createArtifact": map[string]any{"artifact": map[string]any{"id": id, "state": state,
		"artifactSequence": map[string]any{"latestArtifact": l}}}}
}

// pendingFor returns the pending version id names, which c may write.
func (s *Server) pendingFor(c *caller, id string) (policy.Artifact, error) {
	a, ok := s.artifactState(id)
	if !ok || !s.writable(c, a) {
		return a, gqlErrorf(string(policy.CodeArtifactNotFound), "artifact %q does not exist or you may not write it", id)
	}
	if a.State != policy.ArtifactPending {
		return a, gqlErrorf("artifact_not_pending", "artifact %q is %s, not pending", id, a.State)
	}
	return a, nil
}

func (s *Server) createArtifactManifest(r *http.Request, c *caller, v vars) (any, error) {
	id, _, _ := v.str("artifactID")
	name, _, _ := v.str("name")
	a, err := s.pendingFor(c, id)
	if err != nil {
		return nil, err
	}
	if name != "wandb_manifest.json" {
		return nil, gqlErrorf("unsupported", "only full manifests (wandb_manifest.json) are supported, not %q: incremental and distributed artifacts are not", name)
	}
	var upload any
	if raw, ok := v["includeUpload"]; ok && string(raw) == "true" {
		u, err := s.artifactURL(r, "PUT", "manifests", a.ID, "")
		if err != nil {
			return nil, err
		}
		upload = u
	}
	return map[string]any{"createArtifactManifest": map[string]any{"artifactManifest": map[string]any{
		"id":   gid("ArtifactManifest", a.ID+"/"+name),
		"file": map[string]any{"id": gid("File", a.ID+"/"+name), "uploadUrl": upload, "uploadHeaders": []string{}}}}}, nil
}

func (s *Server) createArtifactFiles(r *http.Request, c *caller, v vars) (any, error) {
	var specs []struct {
		ArtifactID  string          `json:"artifactID"`
		Name        string          `json:"name"`
		MD5         string          `json:"md5"`
		UploadParts json.RawMessage `json:"uploadPartsInput"`
	}
	if err := json.Unmarshal(v["artifactFiles"], &specs); err != nil {
		return nil, gqlErrorf("invalid", "variable $artifactFiles must be a list of file specs")
	}
	checked := map[string]bool{}
	edges := make([]any, len(specs))
	for i, f := range specs {
		if !checked[f.ArtifactID] {
			if _, err := s.pendingFor(c, f.ArtifactID); err != nil {
				return nil, err
			}
			checked[f.ArtifactID] = true
		}
		if len(f.UploadParts) > 0 && string(f.UploadParts) != "null" {
			return nil, gqlErrorf("unsupported", "multipart uploads (files of 2 GiB and more) are not supported (%s)", f.Name)
		}
		raw, err := base64.StdEncoding.DecodeString(f.MD5)
		if err != nil || len(raw) != md5.Size {
			return nil, gqlErrorf("invalid", "file %q: md5 must be base64 of an MD5 digest", f.Name)
		}
		h := hex.EncodeToString(raw)
		node := map[string]any{"storagePath": "wandb_artifacts/objects/" + h, "uploadUrl": nil, "uploadHeaders": []string{},
			"uploadMultipartUrls": nil, "artifact": map[string]any{"id": f.ArtifactID}}
		fi, exists, err := s.arts.Stat(r.Context(), objectName(h))
		if err != nil {
			return nil, err
		}
		if exists && fi.MD5 == f.MD5 {
			// Stored once per content: no upload, the birth version's id.
			if b := fi.Meta["birth"]; b != "" {
				node["artifact"] = map[string]any{"id": b}
			}
		} else {
			u, err := s.artifactURL(r, "PUT", "objects", h, f.ArtifactID)
			if err != nil {
				return nil, err
			}
			node["uploadUrl"], node["uploadHeaders"] = u, []string{"Content-MD5:" + f.MD5}
		}
		edges[i] = map[string]any{"node": node}
	}
	return map[string]any{"createArtifactFiles": map[string]any{"files": map[string]any{"edges": edges}}}, nil
}

// manifestEntry is an entry of a W&B manifest (v1).
type manifestEntry struct {
	Digest          string          `json:"digest"`
	Size            int64           `json:"size"`
	Ref             string          `json:"ref,omitempty"`
	BirthArtifactID string          `json:"birthArtifactID,omitempty"`
	Extra           json.RawMessage `json:"extra,omitempty"`
}

type manifest struct {
	Version  int                      `json:"version"`
	Contents map[string]manifestEntry `json:"contents"`
}

func (s *Server) readManifest(ctx context.Context, id string) (manifest, query.FileInfo, error) {
	var m manifest
	rc, fi, err := s.arts.Get(ctx, manifestName(id))
	if err != nil {
		return m, fi, gqlErrorf("manifest_missing", "artifact %s has no stored manifest: %v", id, err)
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxManifestBytes)).Decode(&m); err != nil || m.Version != 1 {
		return m, fi, gqlErrorf("invalid", "artifact %s: the manifest is not a W&B manifest of version 1", id)
	}
	return m, fi, nil
}

// manifestDigest is W&B's artifact digest of a manifest (spec 5.3).
func manifestDigest(m manifest) string {
	paths := make([]string, 0, len(m.Contents))
	for p := range m.Contents {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := md5.New()
	io.WriteString(h, "wandb-artifact-manifest-v1\n")
	for _, p := range paths {
		fmt.Fprintf(h, "%s:%s\n", p, m.Contents[p].Digest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// commitArtifact checks the stored manifest (its digest is the version's,
// every file body it names is stored) and commits the version: the policy
// gives it its index and aliases.
func (s *Server) commitArtifact(ctx context.Context, c *caller, v vars) (any, error) {
	id, _, _ := v.str("artifactID")
	a, ok := s.artifactState(id)
	if ok && a.State == policy.ArtifactCommitted && s.writable(c, a) {
		return map[string]any{"commitArtifact": map[string]any{"artifact": map[string]any{"id": a.ID, "digest": a.Digest}}}, nil
	}
	a, err := s.pendingFor(c, id)
	if err != nil {
		return nil, err
	}
	m, mfi, err := s.readManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	if d := manifestDigest(m); d != a.Digest {
		return nil, gqlErrorf("digest_mismatch", "the manifest's digest is %s, but the artifact was created with %s", d, a.Digest)
	}
	var objects []string
	var size int64
	seen := map[string]bool{}
	for p, e := range m.Contents {
		size += e.Size
		if e.Ref != "" {
			continue // a reference: no body stored here
		}
		raw, err := base64.StdEncoding.DecodeString(e.Digest)
		if err != nil || len(raw) != md5.Size {
			return nil, gqlErrorf("invalid", "manifest entry %q: digest must be base64 of an MD5", p)
		}
		h := hex.EncodeToString(raw)
		if seen[h] {
			continue
		}
		seen[h] = true
		if _, exists, err := s.arts.Stat(ctx, objectName(h)); err != nil {
			return nil, err
		} else if !exists {
			return nil, gqlErrorf("file_missing", "file %q of artifact %s was never uploaded", p, id)
		}
		objects = append(objects, h)
	}
	sort.Strings(objects)
	_, rej, err := s.propose(ctx, c, events.Event{Entity: a.Entity, Project: a.Project, Payload: events.ArtifactCommittedV1{
		ArtifactID: id, Objects: objects, Size: size, FileCount: len(m.Contents), ManifestMD5: mfi.MD5}}, true)
	if err != nil {
		return nil, err
	}
	if rej != nil {
		return nil, refused(rej)
	}
	return map[string]any{"commitArtifact": map[string]any{"artifact": map[string]any{"id": id, "digest": a.Digest}}}, nil
}

func (s *Server) membershipByName(ctx context.Context, c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str("project")
	name, _, _ := v.str("name")
	if entity == "" {
		entity = c.user.Username
	}
	coll, alias := splitName(name)
	a, link, found, hidden, err := s.lookupLink(ctx, c, nameReq(entity, project, coll, alias))
	if err != nil {
		return nil, err
	}
	if hidden {
		return map[string]any{"project": nil}, nil
	}
	if !found {
		return map[string]any{"project": map[string]any{"artifactCollectionMembership": nil}}, nil
	}
	return map[string]any{"project": map[string]any{"artifactCollectionMembership": linkMembership(a, link)}}, nil
}

func (s *Server) useArtifact(ctx context.Context, c *caller, v vars) (any, error) {
	vv := v
	if _, ok := v["input"]; ok {
		in, err := v.input()
		if err != nil {
			return nil, gqlErrorf("invalid", "%v", err)
		}
		vv = in
	}
	entity, _, _ := vv.str("entityName")
	project, _, _ := vv.str("projectName")
	run, _, _ := vv.str("runName")
	id, _, _ := vv.str("artifactID")
	if entity == "" {
		entity = c.user.Username
	}
	a, _, found := s.readable(c, byID(id))
	if !found || a.State != policy.ArtifactCommitted {
		return nil, gqlErrorf(string(policy.CodeArtifactNotFound), "artifact %q does not exist or you may not read it", id)
	}
	_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project, Run: run,
		Payload: events.ArtifactUsedV1{ArtifactID: id}}, true)
	if err != nil {
		return nil, err
	}
	if rej != nil {
		return nil, refused(rej)
	}
	var desc, meta any
	if a.Description != "" {
		desc = a.Description
	}
	if len(a.Metadata) > 0 {
		meta = string(a.Metadata)
	}
	return map[string]any{"useArtifact": map[string]any{"artifact": map[string]any{"id": a.ID, "digest": a.Digest,
		"description": desc, "state": a.State, "createdAt": wbTime(a.Created), "metadata": meta}}}, nil
}

func (s *Server) fetchManifest(r *http.Request, c *caller, v vars) (any, error) {
	id, _, _ := v.str("id")
	if id == "" {
		id, _, _ = v.str("artifact_id")
	}
	a, found, _, err := s.lookup(r.Context(), c, idReq(id))
	if err != nil || !found || a.State != policy.ArtifactCommitted {
		return map[string]any{"artifact": nil}, err
	}
	u, err := s.artifactURL(r, "GET", "manifests", a.ID, "")
	if err != nil {
		return nil, err
	}
	return map[string]any{"artifact": map[string]any{"currentManifest": map[string]any{"id": gid("ArtifactManifest", a.ID),
		"file": map[string]any{"directUrl": u}}}}, nil
}

// fileNodes lists a version's files with a signed download URL each, in
// path order, from after (a path) at most first.
func (s *Server) fileNodes(r *http.Request, a policy.Artifact, after string, first int, only map[string]bool) ([]any, bool, string, error) {
	m, _, err := s.readManifest(r.Context(), a.ID)
	if err != nil {
		return nil, false, "", err
	}
	paths := make([]string, 0, len(m.Contents))
	for p, e := range m.Contents {
		if e.Ref == "" && (only == nil || only[p]) && p > after {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	more := len(paths) > first
	paths = paths[:min(first, len(paths))]
	edges := make([]any, len(paths))
	end := ""
	for i, p := range paths {
		raw, _ := base64.StdEncoding.DecodeString(m.Contents[p].Digest)
		u, err := s.artifactURL(r, "GET", "objects", hex.EncodeToString(raw), "")
		if err != nil {
			return nil, false, "", err
		}
		edges[i] = map[string]any{"node": map[string]any{"__typename": "File", "id": gid("File", a.ID+"/"+p), "name": p, "directUrl": u}}
		end = p
	}
	return edges, more, end, nil
}

func pageArgs(v vars, cursorVar, firstVar string) (string, int) {
	after, _, _ := v.str(cursorVar)
	first := 5000
	if raw, ok := v[firstVar]; ok && string(raw) != "null" {
		_ = json.Unmarshal(raw, &first)
	}
	return after, max(1, min(first, 10000))
}

func (s *Server) membershipFileURLs(r *http.Request, c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str("project")
	coll, _, _ := v.str("collection")
	alias, _, _ := v.str("alias")
	a, found, _, err := s.lookup(r.Context(), c, nameReq(entity, project, coll, alias))
	if err != nil || !found {
		return map[string]any{"project": nil}, err
	}
	after, first := pageArgs(v, "cursor", "perPage")
	edges, more, end, err := s.fileNodes(r, a, after, first, nil)
	if err != nil {
		return nil, err
	}
	var endCursor any
	if end != "" {
		endCursor = end
	}
	return map[string]any{"project": map[string]any{"artifactCollection": map[string]any{"__typename": "ArtifactSequence",
		"artifactMembership": map[string]any{"files": map[string]any{
			"pageInfo": map[string]any{"__typename": "PageInfo", "endCursor": endCursor, "hasNextPage": more}, "edges": edges}}}}}, nil
}

func (s *Server) fileURLsByEntries(r *http.Request, c *caller, v vars) (any, error) {
	id, _, _ := v.str("id")
	a, found, _, err := s.lookup(r.Context(), c, idReq(id))
	if err != nil || !found || a.State != policy.ArtifactCommitted {
		return map[string]any{"artifact": nil}, err
	}
	var entries []struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(v["entries"], &entries)
	only := map[string]bool{}
	for _, e := range entries {
		only[e.Name] = true
	}
	edges, more, end, err := s.fileNodes(r, a, "", 1<<30, only)
	if err != nil {
		return nil, err
	}
	var endCursor any
	if end != "" {
		endCursor = end
	}
	return map[string]any{"artifact": map[string]any{"filesByManifestEntries": map[string]any{
		"pageInfo": map[string]any{"endCursor": endCursor, "hasNextPage": more}, "edges": edges}}}, nil
}

// GCGrace is how old an unreferenced object must be before garbage
// collection deletes it: an upload URL's lifetime, so that a body uploaded
// for a version not yet committed (or answered "already stored" to a
// client about to commit) is never taken away under it.
var GCGrace = UploadURLTTL

// CollectGarbage deletes the file bodies and manifests that no live
// version (pending or committed, in a live project) names, older than
// grace. Versions are soft-deleted by events; this reclaims their bytes.
func (s *Server) CollectGarbage(ctx context.Context, grace time.Duration) (deleted int, freed int64, err error) {
	objects, versions := map[string]bool{}, map[string]bool{}
	s.in.View(func(st *policy.State) { objects, versions = st.LiveObjects() })
	list, err := s.arts.List(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	cutoff := time.Now().Add(-grace)
	for _, fi := range list {
		if fi.Updated.After(cutoff) {
			continue
		}
		live := true
		switch {
		case strings.HasPrefix(fi.Name, "objects/"):
			live = objects[strings.TrimPrefix(fi.Name, "objects/")]
		case strings.HasPrefix(fi.Name, "manifests/"):
			live = versions[strings.TrimPrefix(fi.Name, "manifests/")]
		case strings.HasPrefix(fi.Name, "tmp/"):
			live = false // an upload that never finished
		}
		if live {
			continue
		}
		if err := s.arts.Delete(ctx, fi.Name); err != nil {
			return deleted, freed, err
		}
		deleted++
		freed += fi.Size
	}
	return deleted, freed, nil
}

// collectGarbage serves POST /api/v1/artifacts/gc?grace=<duration> to site
// admins.
func (s *Server) collectGarbage(w http.ResponseWriter, r *http.Request) {
	c, err := s.authenticate(r)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	if !c.user.SiteAdmin {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "forbidden", "only a site admin may collect artifact garbage"))
		return
	}
	if s.arts == nil {
		lbhttp.WriteError(w, s.log, errs.New(errs.NotImplemented, "unsupported", "artifacts are not configured"))
		return
	}
	grace := GCGrace
	if g := r.URL.Query().Get("grace"); g != "" {
		if grace, err = time.ParseDuration(g); err != nil || grace < 0 {
			lbhttp.WriteError(w, s.log, errs.New(errs.Invalid, "invalid", "grace must be a duration such as 24h"))
			return
		}
	}
	n, freed, err := s.CollectGarbage(r.Context(), grace)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	lbhttp.WriteJSON(w, http.StatusOK, map[string]any{"deleted": n, "freed_bytes": freed})
}
