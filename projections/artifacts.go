package projections

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// Artifact version states (as the write side names them).
const (
	ArtifactPending   = "PENDING"
	ArtifactCommitted = "COMMITTED"
	ArtifactDeleted   = "DELETED"
)

// ArtifactCollection is an artifact's versions in a project (W&B's
// artifact sequence): its type, the ids of its committed versions by index
// (deleted ones included, so vN keeps naming the same version) and who
// holds each alias.
type ArtifactCollection struct {
	Entity    string            `json:"entity"`
	Project   string            `json:"project"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	Live      int               `json:"versions"`         // committed, not deleted
	Pending   int               `json:"pending_versions"` // created, not committed (nor deleted)
	Versions  []string          `json:"version_ids"`
	Aliases   map[string]string `json:"aliases"` // alias -> version id
	// Portfolio collections hold links (link_artifact) to versions of
	// other collections, maybe in other projects: Versions are the linked
	// ids by the portfolio's index.
	Portfolio bool `json:"portfolio,omitempty"`
}

// RunRef names a run, and when it produced or used an artifact.
type RunRef struct {
	Entity  string    `json:"entity"`
	Project string    `json:"project"`
	Run     string    `json:"run"`
	Time    time.Time `json:"time"`
}

// ArtifactVersion is one version of a collection.
type ArtifactVersion struct {
	ID          string     `json:"id"`
	Entity      string     `json:"entity"`
	Project     string     `json:"project"`
	Collection  string     `json:"collection"`
	Type        string     `json:"type"`
	State       string     `json:"state"`
	Index       int        `json:"index"` // vN once committed, -1 before
	Digest      string     `json:"digest"`
	Aliases     []string   `json:"aliases"`
	Description string     `json:"description,omitempty"`
	Metadata    []byte     `json:"metadata,omitempty"`
	Size        int64      `json:"size"`
	FileCount   int        `json:"file_count"`
	ManifestMD5 string     `json:"manifest_md5,omitempty"`
	CreatedBy   string     `json:"created_by"` // the user
	CreatedAt   time.Time  `json:"created_at"`
	CommittedAt *time.Time `json:"committed_at,omitempty"`
	DeletedAt   *time.Time `json:"deleted_at,omitempty"`
	// Run is the run that logged it (its output), UsedBy the runs that
	// used it (their input), in the order they did, in any project.
	Run    *RunRef  `json:"created_by_run,omitempty"`
	UsedBy []RunRef `json:"used_by"`
}

// ArtifactRef is a version as a run's lineage names it.
type ArtifactRef struct {
	Entity  string    `json:"entity"`
	Project string    `json:"project"`
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
}

// Key layout of artifacts: collections per project, versions per
// collection, an index from version id to its key, and each run's inputs
// and outputs.
func artCollPrefix(e, p string) []byte { return []byte("artc/" + e + "/" + p + "/") }
func artCollKey(e, p, c string) []byte { return []byte("artc/" + e + "/" + p + "/" + c) }
func artVerPrefix(e, p string) []byte  { return []byte("artv/" + e + "/" + p + "/") }
func artVerKey(e, p, c, id string) []byte {
	return []byte("artv/" + e + "/" + p + "/" + c + "\x00" + id)
}
func artIDKey(id string) []byte             { return []byte("arti/" + id) }
func artInProjectPrefix(e, p string) []byte { return []byte("artin/" + e + "/" + p + "/") }
func artOutProjectPrefix(e, p string) []byte {
	return []byte("artout/" + e + "/" + p + "/")
}
func artInPrefix(e, p, run string) []byte { return []byte("artin/" + e + "/" + p + "/" + run + "\x00") }
func artOutPrefix(e, p, run string) []byte {
	return []byte("artout/" + e + "/" + p + "/" + run + "\x00")
}

func isArtifactEvent(t events.Type) bool {
	switch t {
	case events.ArtifactCreated, events.ArtifactCommitted, events.ArtifactAliasesAdded, events.ArtifactUsed, events.ArtifactDeleted,
		events.ArtifactLinked:
		return true
	}
	return false
}

func (f *fold) artCollection(e, p, name string) (*ArtifactCollection, error) {
	var c ArtifactCollection
	if err := getJSON(f.txn, artCollKey(e, p, name), &c); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if c.Aliases == nil {
		c.Aliases = map[string]string{}
	}
	return &c, nil
}

// artVersion reads a version by id (nil if unknown here).
func (f *fold) artVersion(id string) (*ArtifactVersion, error) {
	it, err := f.txn.Get(artIDKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	key, err := it.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	var v ArtifactVersion
	if err := getJSON(f.txn, key, &v); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &v, nil
}

func (f *fold) putVersion(v *ArtifactVersion) error {
	return f.setJSON(artVerKey(v.Entity, v.Project, v.Collection, v.ID), v)
}

// applyArtifact folds an artifact event of a live project.
func (f *fold) applyArtifact(e events.Event) error {
	switch pl := e.Payload.(type) {
	case events.ArtifactCreatedV1:
		return f.artifactCreated(e, pl)
	case events.ArtifactUsedV1:
		return f.artifactUsed(e, pl)
	case events.ArtifactLinkedV1:
		return f.artifactLinked(e, pl)
	}
	var id string
	switch pl := e.Payload.(type) {
	case events.ArtifactCommittedV1:
		id = pl.ArtifactID
	case events.ArtifactAliasesAddedV1:
		id = pl.ArtifactID
	case events.ArtifactDeletedV1:
		id = pl.ArtifactID
	}
	v, err := f.artVersion(id)
	if err != nil || v == nil || v.Entity != e.Entity || v.Project != e.Project {
		return err
	}
	c, err := f.artCollection(v.Entity, v.Project, v.Collection)
	if err != nil || c == nil {
		return err
	}
	c.UpdatedAt = e.Time
	switch pl := e.Payload.(type) {
	case events.ArtifactCommittedV1:
		if v.State != ArtifactPending {
			return nil
		}
		t := e.Time
		v.State, v.Index, v.CommittedAt = ArtifactCommitted, pl.VersionIndex, &t
		v.Size, v.FileCount, v.ManifestMD5 = pl.Size, pl.FileCount, pl.ManifestMD5
		c.Pending--
		c.Live++
		c.Versions = append(c.Versions, v.ID)
		if err := f.moveAliases(c, v, pl.Aliases); err != nil {
			return err
		}
	case events.ArtifactAliasesAddedV1:
		if v.State != ArtifactCommitted {
			return nil
		}
		if err := f.moveAliases(c, v, pl.Aliases); err != nil {
			return err
		}
	case events.ArtifactDeletedV1:
		if v.State == ArtifactDeleted {
			return nil
		}
		if v.State == ArtifactPending {
			c.Pending--
		} else {
			c.Live--
		}
		for _, al := range v.Aliases {
			if c.Aliases[al] == v.ID {
				delete(c.Aliases, al)
			}
		}
		t := e.Time
		v.State, v.Aliases, v.DeletedAt = ArtifactDeleted, []string{}, &t
	}
	if err := f.putVersion(v); err != nil {
		return err
	}
	return f.setJSON(artCollKey(c.Entity, c.Project, c.Name), c)
}

func (f *fold) artifactCreated(e events.Event, pl events.ArtifactCreatedV1) error {
	if old, err := f.artVersion(pl.ArtifactID); err != nil || old != nil {
		return err // ids are unique (the policy refuses a reused one)
	}
	c, err := f.artCollection(e.Entity, e.Project, pl.Collection)
	if err != nil {
		return err
	}
	if c == nil {
		c = &ArtifactCollection{Entity: e.Entity, Project: e.Project, Name: pl.Collection, Type: pl.Type, CreatedAt: e.Time,
			Versions: []string{}, Aliases: map[string]string{}}
	}
	c.Pending++
	c.UpdatedAt = e.Time
	v := &ArtifactVersion{ID: pl.ArtifactID, Entity: e.Entity, Project: e.Project, Collection: pl.Collection, Type: pl.Type,
		State: ArtifactPending, Index: -1, Digest: pl.Digest, Aliases: []string{}, Description: pl.Description,
		Metadata: pl.Metadata, CreatedBy: e.Actor, CreatedAt: e.Time, UsedBy: []RunRef{}}
	if pl.Run != "" {
		v.Run = &RunRef{Entity: e.Entity, Project: e.Project, Run: pl.Run, Time: e.Time}
		ref := ArtifactRef{Entity: e.Entity, Project: e.Project, ID: v.ID, Time: e.Time}
		if err := f.setJSON(append(artOutPrefix(e.Entity, e.Project, pl.Run), v.ID...), ref); err != nil {
			return err
		}
	}
	key := artVerKey(v.Entity, v.Project, v.Collection, v.ID)
	if err := f.set(artIDKey(v.ID), key); err != nil {
		return err
	}
	if err := f.setJSON(key, v); err != nil {
		return err
	}
	return f.setJSON(artCollKey(c.Entity, c.Project, c.Name), c)
}

// artifactUsed records a run's input; the version (maybe in another
// project, maybe not in a partial read model) records its consumer.
func (f *fold) artifactUsed(e events.Event, pl events.ArtifactUsedV1) error {
	ref := ArtifactRef{Entity: pl.ArtifactEntity, Project: pl.ArtifactProject, ID: pl.ArtifactID, Time: e.Time}
	if err := f.setJSON(append(artInPrefix(e.Entity, e.Project, e.Run), pl.ArtifactID...), ref); err != nil {
		return err
	}
	v, err := f.artVersion(pl.ArtifactID)
	if err != nil || v == nil {
		return err
	}
	for _, u := range v.UsedBy {
		if u.Entity == e.Entity && u.Project == e.Project && u.Run == e.Run {
			return nil
		}
	}
	v.UsedBy = append(v.UsedBy, RunRef{Entity: e.Entity, Project: e.Project, Run: e.Run, Time: e.Time})
	return f.putVersion(v)
}

// artifactLinked adds a link to a portfolio of the event's project.
func (f *fold) artifactLinked(e events.Event, pl events.ArtifactLinkedV1) error {
	c, err := f.artCollection(e.Entity, e.Project, pl.Portfolio)
	if err != nil {
		return err
	}
	if c == nil {
		c = &ArtifactCollection{Entity: e.Entity, Project: e.Project, Name: pl.Portfolio, Type: pl.Type, CreatedAt: e.Time,
			Versions: []string{}, Aliases: map[string]string{}, Portfolio: true}
	}
	if !slices.Contains(c.Versions, pl.ArtifactID) {
		c.Versions = append(c.Versions, pl.ArtifactID)
		c.Live++
	}
	for _, al := range pl.Aliases {
		c.Aliases[al] = pl.ArtifactID
	}
	c.UpdatedAt = e.Time
	return f.setJSON(artCollKey(c.Entity, c.Project, c.Name), c)
}

// moveAliases gives v the aliases, taking each from the version of its
// collection that held it.
func (f *fold) moveAliases(c *ArtifactCollection, v *ArtifactVersion, aliases []string) error {
	for _, al := range aliases {
		if prev := c.Aliases[al]; prev != "" && prev != v.ID {
			h, err := f.artVersion(prev)
			if err != nil {
				return err
			}
			if h != nil {
				h.Aliases = slices.DeleteFunc(h.Aliases, func(x string) bool { return x == al })
				if err := f.putVersion(h); err != nil {
					return err
				}
			}
		}
		c.Aliases[al] = v.ID
		if !slices.Contains(v.Aliases, al) {
			v.Aliases = append(v.Aliases, al)
		}
	}
	return nil
}

// deleteArtifacts removes a deleted project's collections, versions (and
// their id index) and its runs' lineage.
func (f *fold) deleteArtifacts(e, p string) error {
	var ids []string
	opts := badger.DefaultIteratorOptions
	opts.Prefix = artVerPrefix(e, p)
	it := f.txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if i := slices.Index(k, 0); i >= 0 {
			ids = append(ids, string(k[i+1:]))
		}
	}
	it.Close()
	for _, id := range ids {
		err := f.txn.Delete(artIDKey(id))
		if errors.Is(err, badger.ErrTxnTooBig) {
			// As in deletePrefix: the transaction holds deletions only, and
			// deleting again is harmless.
			if err = f.txn.Commit(); err == nil {
				f.txn, f.size = f.db.NewTransaction(true), 0
				err = f.txn.Delete(artIDKey(id))
			}
		}
		if err != nil {
			return err
		}
	}
	for _, prefix := range [][]byte{artCollPrefix(e, p), artVerPrefix(e, p), artInProjectPrefix(e, p), artOutProjectPrefix(e, p)} {
		if err := f.deletePrefix(prefix); err != nil {
			return err
		}
	}
	return nil
}

// Reading artifacts.

// ArtifactCollections returns a project's collections, by name.
func (s *Store) ArtifactCollections(entity, project string) ([]ArtifactCollection, error) {
	out := []ArtifactCollection{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = artCollPrefix(entity, project)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c ArtifactCollection
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &c) }); err != nil {
				return err
			}
			if c.Portfolio {
				c.Live = len(linkedVersions(txn, c))
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// ArtifactCollection returns one collection (a portfolio counts its live
// links).
func (s *Store) ArtifactCollection(entity, project, name string) (ArtifactCollection, error) {
	var c ArtifactCollection
	err := s.db.View(func(txn *badger.Txn) error {
		if err := getJSON(txn, artCollKey(entity, project, name), &c); err != nil {
			return err
		}
		if c.Portfolio {
			c.Live = len(linkedVersions(txn, c))
		}
		return nil
	})
	return c, err
}

// linkedVersions returns the live committed versions a portfolio links, by
// its index.
func linkedVersions(txn *badger.Txn, c ArtifactCollection) []ArtifactVersion {
	var out []ArtifactVersion
	for _, id := range c.Versions {
		if v, err := versionByID(txn, id); err == nil && v.State == ArtifactCommitted {
			out = append(out, v)
		}
	}
	return out
}

func versionByID(txn *badger.Txn, id string) (ArtifactVersion, error) {
	var v ArtifactVersion
	it, err := txn.Get(artIDKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, err
	}
	key, err := it.ValueCopy(nil)
	if err != nil {
		return v, err
	}
	return v, getJSON(txn, key, &v)
}

// ArtifactVersions returns a collection's live committed versions, by
// index.
func (s *Store) ArtifactVersions(entity, project, name string) ([]ArtifactVersion, error) {
	out := []ArtifactVersion{}
	err := s.db.View(func(txn *badger.Txn) error {
		var c ArtifactCollection
		if err := getJSON(txn, artCollKey(entity, project, name), &c); err != nil {
			return err
		}
		if c.Portfolio {
			out = append(out, linkedVersions(txn, c)...)
			return nil
		}
		for _, id := range c.Versions {
			var v ArtifactVersion
			if err := getJSON(txn, artVerKey(entity, project, name, id), &v); err != nil {
				return err
			}
			if v.State == ArtifactCommitted {
				out = append(out, v)
			}
		}
		return nil
	})
	return out, err
}

// ArtifactByID returns a version by id, whatever its state.
func (s *Store) ArtifactByID(id string) (ArtifactVersion, error) {
	var v ArtifactVersion
	err := s.db.View(func(txn *badger.Txn) (err error) {
		v, err = versionByID(txn, id)
		return err
	})
	return v, err
}

var versionName = regexp.MustCompile(`^v([0-9]{1,9})$`)

// ResolveArtifact returns the live committed version of a collection that
// name names: an alias, vN, or a version id of the collection. "latest"
// falls back to the newest live version when no version holds it.
func (s *Store) ResolveArtifact(entity, project, collection, name string) (ArtifactVersion, error) {
	c, err := s.ArtifactCollection(entity, project, collection)
	if err != nil {
		return ArtifactVersion{}, err
	}
	live := func(id string) (ArtifactVersion, bool, error) {
		v, err := s.ArtifactByID(id)
		if errors.Is(err, ErrNotFound) {
			return v, false, nil
		}
		mine := v.Entity == entity && v.Project == project && v.Collection == collection
		if c.Portfolio {
			mine = slices.Contains(c.Versions, id)
		}
		ok := err == nil && v.State == ArtifactCommitted && mine
		return v, ok, err
	}
	var ids []string
	if id, ok := c.Aliases[name]; ok {
		ids = append(ids, id)
	}
	if m := versionName.FindStringSubmatch(name); m != nil {
		if n, _ := strconv.Atoi(m[1]); n < len(c.Versions) {
			ids = append(ids, c.Versions[n])
		}
	} else {
		ids = append(ids, name)
	}
	if name == "latest" {
		for i := len(c.Versions) - 1; i >= 0; i-- {
			ids = append(ids, c.Versions[i])
		}
	}
	for _, id := range ids {
		if v, ok, err := live(id); err != nil || ok {
			return v, err
		}
	}
	return ArtifactVersion{}, ErrNotFound
}

// RunArtifacts returns what a run used (inputs) and logged (outputs), in
// the order it did.
func (s *Store) RunArtifacts(entity, project, run string) (inputs, outputs []ArtifactRef, err error) {
	inputs, outputs = []ArtifactRef{}, []ArtifactRef{}
	err = s.db.View(func(txn *badger.Txn) error {
		for _, x := range []struct {
			prefix []byte
			out    *[]ArtifactRef
		}{{artInPrefix(entity, project, run), &inputs}, {artOutPrefix(entity, project, run), &outputs}} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = x.prefix
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				var r ArtifactRef
				if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &r) }); err != nil {
					it.Close()
					return err
				}
				*x.out = append(*x.out, r)
			}
			it.Close()
		}
		return nil
	})
	for _, l := range [][]ArtifactRef{inputs, outputs} {
		slices.SortStableFunc(l, func(a, b ArtifactRef) int { return a.Time.Compare(b.Time) })
	}
	return inputs, outputs, err
}
