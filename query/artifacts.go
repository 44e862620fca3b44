package query

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// Ops of artifact reads.
const (
	OpArtifactCollections = "artifact_collections" // a project's collections: []CollectionView
	OpArtifactVersions    = "artifact_versions"    // a collection's versions: CollectionVersions
	OpArtifact            = "artifact"             // one version with its lineage: ArtifactView
	OpRunArtifacts        = "run_artifacts"        // a run's inputs and outputs: RunArtifacts
)

// CollectionView is an artifact collection as the API shows it.
type CollectionView struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Versions int               `json:"versions"`
	Pending  int               `json:"pending_versions"`
	Aliases  map[string]string `json:"aliases"` // alias -> vN
	Latest   string            `json:"latest,omitempty"`
	// Portfolio collections hold links to versions of other collections.
	Portfolio bool      `json:"portfolio,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// VersionView is an artifact version as the API shows it: vN and the
// runs that produced and used it (those the caller may read).
type VersionView struct {
	projections.ArtifactVersion
	Version  string          `json:"version"` // vN
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Link is set when the version is read through a portfolio.
	Link *LinkView `json:"link,omitempty"`
}

// LinkView is a version as a portfolio links it: its index and aliases
// there.
type LinkView struct {
	Entity    string   `json:"entity"`
	Project   string   `json:"project"`
	Portfolio string   `json:"portfolio"`
	Version   string   `json:"version"` // vN in the portfolio
	Index     int      `json:"index"`
	Aliases   []string `json:"aliases"`
}

// linkView shows v as portfolio c links it (nil if c is no portfolio).
func linkView(c projections.ArtifactCollection, v *VersionView) {
	if !c.Portfolio {
		return
	}
	i := slices.Index(c.Versions, v.ID)
	l := &LinkView{Entity: c.Entity, Project: c.Project, Portfolio: c.Name, Version: "v" + strconv.Itoa(i), Index: i, Aliases: []string{}}
	for al, id := range c.Aliases {
		if id == v.ID {
			l.Aliases = append(l.Aliases, al)
		}
	}
	sort.Strings(l.Aliases)
	v.Link = l
}

// ArtifactView is one version with its lineage.
type ArtifactView struct {
	VersionView
	Manifest *Manifest `json:"manifest,omitempty"`
}

// CollectionVersions answers OpArtifactVersions.
type CollectionVersions struct {
	Collection CollectionView `json:"collection"`
	Versions   []VersionView  `json:"versions"`
}

// RunArtifacts answers OpRunArtifacts: the versions a run used and the
// ones it logged (live, committed, in projects the caller may read).
type RunArtifacts struct {
	Inputs  []VersionView `json:"inputs"`
	Outputs []VersionView `json:"outputs"`
}

func artifactNotFound(format string, args ...any) error {
	return errs.New(errs.NotFound, string(policy.CodeArtifactNotFound), format, args...)
}

// canRead reports whether user may read a project (a deleted one: no).
func (s *Service) canRead(user, entity, project string, cache map[string]bool) bool {
	k := entity + "/" + project
	if ok, seen := cache[k]; seen {
		return ok
	}
	_, _, err := s.authorize(user, entity, project)
	cache[k] = err == nil
	return err == nil
}

// view shows a version: its lineage limited to runs the caller may read
// that still exist.
func (s *Service) view(user string, v projections.ArtifactVersion, cache map[string]bool) VersionView {
	out := VersionView{ArtifactVersion: v, Version: "v" + strconv.Itoa(v.Index)}
	if v.Index < 0 {
		out.Version = ""
	}
	if len(v.Metadata) > 0 && json.Valid(v.Metadata) {
		out.Metadata = json.RawMessage(v.Metadata)
	}
	out.ArtifactVersion.Metadata = nil
	used := []projections.RunRef{}
	for _, u := range v.UsedBy {
		if !s.canRead(user, u.Entity, u.Project, cache) {
			continue
		}
		if _, err := s.Store.Run(u.Entity, u.Project, u.Run); err == nil {
			used = append(used, u)
		}
	}
	out.UsedBy = used
	if v.Run != nil {
		if _, err := s.Store.Run(v.Run.Entity, v.Run.Project, v.Run.Run); err != nil || !s.canRead(user, v.Run.Entity, v.Run.Project, cache) {
			out.Run = nil // the run was deleted, or (a version read through a portfolio) its project is not the caller's
		}
	}
	return out
}

func collectionView(c projections.ArtifactCollection) CollectionView {
	out := CollectionView{Name: c.Name, Type: c.Type, Versions: c.Live, Pending: c.Pending, Aliases: map[string]string{}, Portfolio: c.Portfolio,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	index := map[string]int{}
	for i, id := range c.Versions {
		index[id] = i
	}
	for al, id := range c.Aliases {
		if i, ok := index[id]; ok {
			out.Aliases[al] = "v" + strconv.Itoa(i)
		}
	}
	out.Latest = out.Aliases["latest"]
	return out
}

// readArtifacts answers the artifact ops; ok is false for other ops. The
// project is authorized already (OpArtifact by id alone authorizes the
// version's project first, in read).
func (s *Service) readArtifacts(user string, r Request) (v any, ok bool, err error) {
	cache := map[string]bool{r.Entity + "/" + r.Project: true}
	switch r.Op {
	case OpArtifactCollections:
		colls, err := s.Store.ArtifactCollections(r.Entity, r.Project)
		out := make([]CollectionView, 0, len(colls))
		for _, c := range colls {
			out = append(out, collectionView(c))
		}
		return out, true, err
	case OpArtifactVersions:
		c, err := s.collection(r)
		if err != nil {
			return nil, true, err
		}
		vs, err := s.Store.ArtifactVersions(r.Entity, r.Project, r.Collection)
		out := CollectionVersions{Collection: collectionView(c), Versions: make([]VersionView, 0, len(vs))}
		for _, v := range vs {
			vv := s.view(user, v, cache)
			linkView(c, &vv)
			out.Versions = append(out.Versions, vv)
		}
		return out, true, err
	case OpArtifact:
		v, c, err := s.resolve(r)
		if err != nil {
			return nil, true, err
		}
		vv := s.view(user, v, cache)
		linkView(c, &vv)
		return ArtifactView{VersionView: vv}, true, nil
	case OpRunArtifacts:
		out, err := s.runArtifacts(user, r, cache)
		return out, true, err
	}
	return nil, false, nil
}

func (s *Service) collection(r Request) (projections.ArtifactCollection, error) {
	if err := policy.ValidateArtifactName("name", r.Collection); err != nil {
		return projections.ArtifactCollection{}, errs.New(errs.Invalid, "invalid", "%v", err)
	}
	c, err := s.Store.ArtifactCollection(r.Entity, r.Project, r.Collection)
	if errors.Is(err, projections.ErrNotFound) {
		return c, errs.New(errs.NotFound, "artifact_collection_not_found", "artifact %q does not exist in %s/%s", r.Collection, r.Entity, r.Project)
	}
	return c, err
}

// resolve finds the version r names: Collection and Version (vN, an alias
// or a version id).
func (s *Service) resolve(r Request) (projections.ArtifactVersion, projections.ArtifactCollection, error) {
	var none projections.ArtifactCollection
	if r.Collection == "" {
		// By id alone (W&B's ArtifactByID): pending versions show too.
		v, err := s.Store.ArtifactByID(r.Version)
		if err == nil && v.State != projections.ArtifactDeleted && v.Entity == r.Entity && v.Project == r.Project {
			return v, none, nil
		}
		if err != nil && !errors.Is(err, projections.ErrNotFound) {
			return v, none, err
		}
		return v, none, artifactNotFound("artifact %q does not exist in %s/%s", r.Version, r.Entity, r.Project)
	}
	c, err := s.collection(r)
	if err != nil {
		return projections.ArtifactVersion{}, c, err
	}
	v, err := s.Store.ResolveArtifact(r.Entity, r.Project, r.Collection, r.Version)
	if errors.Is(err, projections.ErrNotFound) {
		return v, c, artifactNotFound("%s:%s does not name a version in %s/%s", r.Collection, r.Version, r.Entity, r.Project)
	}
	return v, c, err
}

func (s *Service) runArtifacts(user string, r Request, cache map[string]bool) (RunArtifacts, error) {
	out := RunArtifacts{Inputs: []VersionView{}, Outputs: []VersionView{}}
	if _, err := s.run(r); err != nil {
		return out, err
	}
	in, outs, err := s.Store.RunArtifacts(r.Entity, r.Project, r.Run)
	if err != nil {
		return out, err
	}
	for _, x := range []struct {
		refs []projections.ArtifactRef
		dst  *[]VersionView
	}{{in, &out.Inputs}, {outs, &out.Outputs}} {
		for _, ref := range x.refs {
			if !s.canRead(user, ref.Entity, ref.Project, cache) {
				continue
			}
			v, err := s.Store.ArtifactByID(ref.ID)
			if errors.Is(err, projections.ErrNotFound) {
				continue
			}
			if err != nil {
				return out, err
			}
			if v.State == projections.ArtifactCommitted {
				*x.dst = append(*x.dst, s.view(user, v, cache))
			}
		}
	}
	return out, nil
}

// artifactProject fills in the project of a version named by id alone
// (W&B's ArtifactByID), so that read authorizes it like any other.
func (s *Service) artifactProject(user string, r *Request) error {
	if r.Op != OpArtifact || r.Entity != "" || r.Project != "" {
		return nil
	}
	v, err := s.Store.ArtifactByID(r.Version)
	if err != nil && !errors.Is(err, projections.ErrNotFound) {
		return err
	}
	if err != nil || !s.canRead(user, v.Entity, v.Project, map[string]bool{}) {
		// Whether the id exists, and where, does not leak.
		return artifactNotFound("artifact %q does not exist or you may not read its project", r.Version)
	}
	r.Entity, r.Project, r.Collection = v.Entity, v.Project, ""
	return nil
}

// Artifact store object names: file bodies once per content (hex MD5),
// manifests per version.
func ArtifactObjectName(hexMD5 string) string { return "objects/" + hexMD5 }
func ArtifactManifestName(id string) string   { return "manifests/" + id }

// MaxManifestBytes bounds a stored manifest.
const MaxManifestBytes = 64 << 20

// ManifestEntry is a file of a W&B manifest (version 1).
type ManifestEntry struct {
	Digest          string          `json:"digest"` // base64 MD5
	Size            int64           `json:"size"`
	Ref             string          `json:"ref,omitempty"`
	BirthArtifactID string          `json:"birthArtifactID,omitempty"`
	Extra           json.RawMessage `json:"extra,omitempty"`
}

// Manifest is a version's W&B manifest: its files by path.
type Manifest struct {
	Version  int                      `json:"version"`
	Contents map[string]ManifestEntry `json:"contents"`
}

// Artifacts answers artifact versions with their manifests, and their
// files' bytes, from the artifact object store to callers the read
// service lets read the version (as for runs: a non-member gets
// not-found).
type Artifacts struct {
	Reader Reader
	Store  FileStore
}

// Version returns a version (collection + vN, alias or id) with its
// manifest.
func (a *Artifacts) Version(ctx context.Context, keyHash, entity, project, collection, version string, minSeq uint64) (ArtifactView, error) {
	var v ArtifactView
	data, err := a.Reader.Read(ctx, Request{KeyHash: keyHash, Op: OpArtifact, Entity: entity, Project: project,
		Collection: collection, Version: version, MinSeq: minSeq})
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, err
	}
	m, err := a.manifest(ctx, v.ID)
	if err != nil {
		return v, err
	}
	v.Manifest = &m
	return v, nil
}

func (a *Artifacts) manifest(ctx context.Context, id string) (Manifest, error) {
	var m Manifest
	rc, _, err := a.Store.Get(ctx, ArtifactManifestName(id))
	if err != nil {
		if e, ok := errs.As(err); ok && e.Kind == errs.NotFound {
			return m, errs.New(errs.NotFound, "manifest_missing", "artifact %s has no stored manifest", id)
		}
		return m, errs.New(errs.Unavailable, "unavailable", "artifact storage is unavailable: %v", err)
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, MaxManifestBytes)).Decode(&m); err != nil || m.Version != 1 {
		return m, errs.New(errs.Internal, "manifest_invalid", "artifact %s: the stored manifest is not a W&B manifest of version 1", id)
	}
	if m.Contents == nil {
		m.Contents = map[string]ManifestEntry{}
	}
	return m, nil
}

// Open opens one file of a version (by its path in the manifest).
func (a *Artifacts) Open(ctx context.Context, keyHash, entity, project, collection, version, path string) (io.ReadCloser, FileInfo, error) {
	v, err := a.Version(ctx, keyHash, entity, project, collection, version, 0)
	if err != nil {
		return nil, FileInfo{}, err
	}
	e, ok := v.Manifest.Contents[path]
	if !ok {
		return nil, FileInfo{}, errs.New(errs.NotFound, "file_not_found", "%s:%s has no file %q", v.Collection, v.Version, path)
	}
	if e.Ref != "" {
		return nil, FileInfo{}, errs.New(errs.NotFound, "file_is_reference", "%q is a reference to %s: Logbook does not store its bytes", path, e.Ref)
	}
	raw, err := base64.StdEncoding.DecodeString(e.Digest)
	if err != nil || len(raw) != 16 {
		return nil, FileInfo{}, errs.New(errs.Internal, "manifest_invalid", "manifest entry %q has no MD5 digest", path)
	}
	rc, fi, err := a.Store.Get(ctx, ArtifactObjectName(hex.EncodeToString(raw)))
	if err != nil {
		return nil, fi, err
	}
	fi.Name = path
	return rc, fi, nil
}

// SortedPaths returns a manifest's paths in order.
func (m Manifest) SortedPaths() []string {
	out := make([]string, 0, len(m.Contents))
	for p := range m.Contents {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
