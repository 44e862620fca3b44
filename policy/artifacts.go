package policy

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/logbook/logbook/events"
)

// Artifact states.
const (
	ArtifactPending   = "PENDING"
	ArtifactCommitted = "COMMITTED"
	ArtifactDeleted   = "DELETED"
)

// Limits of artifacts.
const (
	MaxArtifactNameLen = 128
	MaxAliasLen        = 128
	MaxAliases         = 100
	MaxArtifactObjects = 100000
)

// ArtifactUse is a run that used an artifact version.
type ArtifactUse struct {
	Entity, Project, Run string
	Time                 time.Time
}

// Artifact is a version of an artifact collection.
type Artifact struct {
	ID, Entity, Project string
	Collection, Type    string
	Digest              string
	Run                 string // the run that logged it ("" for none)
	State               string
	Index               int      // vN once committed, -1 before
	Requested           []string // aliases asked for at creation, applied at commit
	Aliases             []string // aliases held (committed versions)
	Description         string
	Metadata            []byte
	Objects             []string // hex MD5 of the file bodies its manifest names
	Size                int64
	FileCount           int
	ManifestMD5         string
	Created, Committed  time.Time
	UsedBy              []ArtifactUse
}

// Collection is an artifact's versions in a project.
type Collection struct {
	Name, Type string
	Versions   []string          // committed versions' ids by index
	Aliases    map[string]string // alias -> artifact id
	Pending    int
	// Portfolio collections hold links to versions of other collections
	// (link_artifact), which Versions and Aliases name.
	Portfolio bool
}

// Version returns the live committed version holding alias, or vN.
// "latest" falls back to the newest live version when nobody holds it.
func (c *Collection) Version(s *State, alias string) *Artifact {
	if id, ok := c.Aliases[alias]; ok {
		if a := s.artifacts[id]; a != nil && a.State == ArtifactCommitted {
			return a
		}
	}
	if m := versionAlias.FindStringSubmatch(alias); m != nil {
		var n int
		fmt.Sscan(m[1], &n)
		if n < len(c.Versions) {
			if a := s.artifacts[c.Versions[n]]; a != nil && a.State == ArtifactCommitted {
				return a
			}
		}
		return nil
	}
	if alias == "latest" {
		for i := len(c.Versions) - 1; i >= 0; i-- {
			if a := s.artifacts[c.Versions[i]]; a != nil && a.State == ArtifactCommitted {
				return a
			}
		}
	}
	return nil
}

var versionAlias = regexp.MustCompile(`^v([0-9]{1,9})$`)

// Artifact returns a version by id, with its project (nil if either is
// gone).
func (s *State) Artifact(id string) (*Artifact, *Project) {
	a := s.artifacts[id]
	if a == nil {
		return nil, nil
	}
	p, ok := s.Project(a.Entity, a.Project)
	if !ok {
		return nil, nil
	}
	return a, p
}

// LiveObjects returns the object digests that live versions (pending or
// committed, in live projects) name: what garbage collection keeps, and
// the ids of every live version (whose manifests it keeps).
func (s *State) LiveObjects() (objects, versions map[string]bool) {
	objects, versions = map[string]bool{}, map[string]bool{}
	for id, a := range s.artifacts {
		if a.State == ArtifactDeleted {
			continue
		}
		if _, ok := s.Project(a.Entity, a.Project); !ok {
			continue
		}
		versions[id] = true
		for _, o := range a.Objects {
			objects[o] = true
		}
	}
	return objects, versions
}

// ArtifactInputs returns the live versions a run used.
func (s *State) ArtifactInputs(entity, project, run string) []*Artifact {
	var out []*Artifact
	for _, a := range s.artifacts {
		if a.State != ArtifactCommitted {
			continue
		}
		for _, u := range a.UsedBy {
			if u.Entity == entity && u.Project == project && u.Run == run {
				out = append(out, a)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b *Artifact) int { return a.Created.Compare(b.Created) })
	return out
}

// applyArtifact folds an artifact event into the state.
func (s *State) applyArtifact(p *Project, e events.Event) {
	if p == nil {
		return
	}
	if p.Collections == nil {
		p.Collections = map[string]*Collection{}
	}
	switch pl := e.Payload.(type) {
	case events.ArtifactCreatedV1:
		c := p.Collections[pl.Collection]
		if c == nil {
			c = &Collection{Name: pl.Collection, Type: pl.Type, Aliases: map[string]string{}}
			p.Collections[pl.Collection] = c
		}
		c.Pending++
		s.artifacts[pl.ArtifactID] = &Artifact{ID: pl.ArtifactID, Entity: e.Entity, Project: e.Project, Collection: pl.Collection,
			Type: pl.Type, Digest: pl.Digest, Run: pl.Run, State: ArtifactPending, Index: -1, Requested: pl.Aliases,
			Description: pl.Description, Metadata: pl.Metadata, Created: e.Time}
	case events.ArtifactCommittedV1:
		a := s.artifacts[pl.ArtifactID]
		if a == nil || a.State != ArtifactPending {
			return
		}
		c := p.Collections[a.Collection]
		a.State, a.Index, a.Committed = ArtifactCommitted, pl.VersionIndex, e.Time
		a.Objects, a.Size, a.FileCount, a.ManifestMD5 = pl.Objects, pl.Size, pl.FileCount, pl.ManifestMD5
		c.Pending--
		c.Versions = append(c.Versions, a.ID)
		s.moveAliases(c, a, pl.Aliases)
	case events.ArtifactAliasesAddedV1:
		if a := s.artifacts[pl.ArtifactID]; a != nil {
			s.moveAliases(p.Collections[a.Collection], a, pl.Aliases)
		}
	case events.ArtifactDeletedV1:
		a := s.artifacts[pl.ArtifactID]
		if a == nil {
			return
		}
		c := p.Collections[a.Collection]
		if a.State == ArtifactPending {
			c.Pending--
		}
		for _, al := range a.Aliases {
			if c.Aliases[al] == a.ID {
				delete(c.Aliases, al)
			}
		}
		a.State, a.Aliases = ArtifactDeleted, nil
	case events.ArtifactLinkedV1:
		s.applyLink(p, pl)
	case events.ArtifactUsedV1:
		if a := s.artifacts[pl.ArtifactID]; a != nil {
			a.UsedBy = append(a.UsedBy, ArtifactUse{Entity: e.Entity, Project: e.Project, Run: e.Run, Time: e.Time})
		}
	}
}

// moveAliases gives a the aliases, taking each from the version of its
// collection that held it.
func (s *State) moveAliases(c *Collection, a *Artifact, aliases []string) {
	for _, al := range aliases {
		if prev := c.Aliases[al]; prev != "" && prev != a.ID {
			if h := s.artifacts[prev]; h != nil {
				h.Aliases = slices.DeleteFunc(h.Aliases, func(x string) bool { return x == al })
			}
		}
		c.Aliases[al] = a.ID
		if !slices.Contains(a.Aliases, al) {
			a.Aliases = append(a.Aliases, al)
		}
	}
}

var artifactName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateArtifactName checks an artifact (collection) name or type: W&B's
// letters, digits, '-', '_' and '.', starting with a letter or digit.
func ValidateArtifactName(kind, name string) error {
	if len(name) == 0 || len(name) > MaxArtifactNameLen || !artifactName.MatchString(name) {
		return fmt.Errorf("artifact %s %q must be 1 to %d letters, digits, '-', '_' or '.', starting with a letter or digit", kind, name, MaxArtifactNameLen)
	}
	return nil
}

// ValidateAlias checks an alias: 1 to 128 printable characters without
// '/' or ':'; "vN" is the version index, not an alias.
func ValidateAlias(al string) error {
	if err := events.ValidateTag(al); err != nil || len(al) > MaxAliasLen {
		return fmt.Errorf("alias %q must be 1 to %d printable characters", al, MaxAliasLen)
	}
	for _, r := range al {
		if r == '/' || r == ':' {
			return fmt.Errorf("alias %q must not contain '/' or ':'", al)
		}
	}
	if versionAlias.MatchString(al) {
		return fmt.Errorf("alias %q is reserved: vN names the version with index N", al)
	}
	return nil
}

func validateAliases(aliases []string) error {
	if len(aliases) > MaxAliases {
		return fmt.Errorf("at most %d aliases (got %d)", MaxAliases, len(aliases))
	}
	for _, al := range aliases {
		if err := ValidateAlias(al); err != nil {
			return err
		}
	}
	return nil
}

// artifactIn returns the version id names in the proposal's project, unless
// it is deleted.
func (pr *proposal) artifactIn(id string) (*Artifact, Decision, bool) {
	a := pr.s.artifacts[id]
	if a == nil || a.Entity != pr.p.Entity || a.Project != pr.p.Project || a.State == ArtifactDeleted {
		return nil, reject(CodeArtifactNotFound, "artifact %q does not exist in %s/%s", id, pr.p.Entity, pr.p.Project), false
	}
	return a, Decision{}, true
}

// decideArtifactCreated creates a pending version.
func decideArtifactCreated(pr *proposal, pl events.ArtifactCreatedV1) Decision {
	if d, ok := need(pr.role, CreateArtifact); !ok {
		return d
	}
	if pl.ArtifactID == "" {
		pl.ArtifactID = pr.p.ID
	}
	for _, err := range []error{events.ValidateRunID(pl.ArtifactID), ValidateArtifactName("name", pl.Collection),
		ValidateArtifactName("type", pl.Type), validateAliases(pl.Aliases), ValidateConfig(pl.Metadata)} {
		if err != nil {
			return reject(CodeInvalid, "%v", err)
		}
	}
	if pl.Digest == "" || len(pl.Digest) > 128 || len(pl.Description) > events.MaxNotesLen {
		return reject(CodeInvalid, "an artifact needs a digest (at most 128 characters) and a description of at most %d characters", events.MaxNotesLen)
	}
	if pr.s.artifacts[pl.ArtifactID] != nil {
		return reject(CodeArtifactExists, "artifact id %q is already used", pl.ArtifactID)
	}
	if pl.Run != "" {
		if r := pr.proj.Runs[pl.Run]; r == nil || r.Deleted {
			return reject(CodeRunNotFound, "run %q does not exist in %s/%s", pl.Run, pr.p.Entity, pr.p.Project)
		}
	}
	if c := pr.proj.Collections[pl.Collection]; c != nil && c.Portfolio {
		return reject(CodeArtifactExists, "%s is a portfolio of linked versions; log to an artifact of its own", pl.Collection)
	}
	if c := pr.proj.Collections[pl.Collection]; c != nil && c.Type != pl.Type {
		return reject(CodeArtifactTypeMismatch, "artifact %s already exists with type %q (not %q)", pl.Collection, c.Type, pl.Type)
	}
	return accept(pr.in(pl))
}

// decideArtifactCommitted commits a pending version: the next index of
// its collection, the aliases it asked for and "latest".
func decideArtifactCommitted(pr *proposal, pl events.ArtifactCommittedV1) Decision {
	if d, ok := need(pr.role, CreateArtifact); !ok {
		return d
	}
	a, d, ok := pr.artifactIn(pl.ArtifactID)
	if !ok {
		return d
	}
	if a.State == ArtifactCommitted {
		return accept() // a retried commit
	}
	if len(pl.Objects) > MaxArtifactObjects || pl.Size < 0 || pl.FileCount < 0 {
		return reject(CodeInvalid, "an artifact version names at most %d objects", MaxArtifactObjects)
	}
	pl.VersionIndex = len(pr.proj.Collections[a.Collection].Versions)
	pl.Aliases = append(slices.DeleteFunc(slices.Clone(a.Requested), func(x string) bool { return x == "latest" }), "latest")
	return accept(pr.in(pl))
}

// decideArtifactAliases gives a committed version aliases (those it does
// not hold yet).
func decideArtifactAliases(pr *proposal, pl events.ArtifactAliasesAddedV1) Decision {
	if d, ok := need(pr.role, CreateArtifact); !ok {
		return d
	}
	a, d, ok := pr.artifactIn(pl.ArtifactID)
	if !ok || a.State != ArtifactCommitted {
		return reject(CodeArtifactNotFound, "artifact %q is not a committed version in %s/%s", pl.ArtifactID, pr.p.Entity, pr.p.Project)
	}
	_ = d
	if err := validateAliases(pl.Aliases); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	c := pr.proj.Collections[a.Collection]
	var add []string
	for _, al := range pl.Aliases {
		if c.Aliases[al] != a.ID && !slices.Contains(add, al) {
			add = append(add, al)
		}
	}
	if len(add) == 0 {
		return accept()
	}
	pl.Aliases = add
	return accept(pr.in(pl))
}

// decideArtifactDeleted soft-deletes a version; one holding aliases only
// with Force (the aliases are removed with it).
func decideArtifactDeleted(pr *proposal, pl events.ArtifactDeletedV1) Decision {
	if d, ok := need(pr.role, DeleteArtifact); !ok {
		return d
	}
	a, d, ok := pr.artifactIn(pl.ArtifactID)
	if !ok {
		return d
	}
	if len(a.Aliases) > 0 && !pl.Force {
		return reject(CodeArtifactHasAliases, "version v%d of %s holds aliases %v; move them first or delete with force", a.Index, a.Collection, a.Aliases)
	}
	pl.RemovedAliases = slices.Clone(a.Aliases)
	return accept(pr.in(pl))
}

// decideArtifactUsed records that a run (which the actor may write: the
// run gate) used an artifact version the actor may read, in any project.
func decideArtifactUsed(pr *proposal, pl events.ArtifactUsedV1) Decision {
	a, ap := pr.s.Artifact(pl.ArtifactID)
	if a == nil || a.State != ArtifactCommitted || !Allowed(pr.s.Role(pr.actor.Username, ap), ReadProject) {
		return reject(CodeArtifactNotFound, "artifact %q does not exist or you may not read its project", pl.ArtifactID)
	}
	for _, u := range a.UsedBy {
		if u.Entity == pr.p.Entity && u.Project == pr.p.Project && u.Run == pr.p.Run {
			return accept() // used before: recorded once
		}
	}
	pl.ArtifactEntity, pl.ArtifactProject = a.Entity, a.Project
	return accept(pr.in(pl))
}
