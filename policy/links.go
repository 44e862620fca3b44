package policy

import (
	"slices"

	"github.com/logbook/logbook/events"
)

// Portfolios (W&B's link_artifact): a collection of a project whose
// versions are links to committed versions of other collections, maybe in
// other projects, with its own vN and aliases. Linking changes nothing of
// the linked version (its own index and aliases stay).

// applyLink folds artifact_linked into the target project p.
func (s *State) applyLink(p *Project, pl events.ArtifactLinkedV1) {
	c := p.Collections[pl.Portfolio]
	if c == nil {
		c = &Collection{Name: pl.Portfolio, Type: pl.Type, Aliases: map[string]string{}, Portfolio: true}
		p.Collections[pl.Portfolio] = c
	}
	if !slices.Contains(c.Versions, pl.ArtifactID) {
		c.Versions = append(c.Versions, pl.ArtifactID)
	}
	for _, al := range pl.Aliases {
		c.Aliases[al] = pl.ArtifactID
	}
}

// LinkIndex returns the index of version id in portfolio c (-1 if not
// linked).
func (c *Collection) LinkIndex(id string) int { return slices.Index(c.Versions, id) }

// decideArtifactLinked links a committed version the actor may read into a
// portfolio of the proposal's project, where the actor may create
// artifacts: a new link gets the next index and "latest"; linking again
// only moves the aliases asked for.
func decideArtifactLinked(pr *proposal, pl events.ArtifactLinkedV1) Decision {
	if d, ok := need(pr.role, CreateArtifact); !ok {
		return d
	}
	a, ap := pr.s.Artifact(pl.ArtifactID)
	if a == nil || a.State != ArtifactCommitted || !Allowed(pr.s.Role(pr.actor.Username, ap), ReadProject) {
		return reject(CodeArtifactNotFound, "artifact %q does not exist or you may not read its project", pl.ArtifactID)
	}
	if err := ValidateArtifactName("name", pl.Portfolio); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	if err := validateAliases(pl.Aliases); err != nil {
		return reject(CodeInvalid, "%v", err)
	}
	c := pr.proj.Collections[pl.Portfolio]
	if c != nil && !c.Portfolio {
		return reject(CodeArtifactExists, "%s in %s/%s is an artifact with versions of its own, not a portfolio of links", pl.Portfolio, pr.p.Entity, pr.p.Project)
	}
	if c != nil && c.Type != a.Type {
		return reject(CodeArtifactTypeMismatch, "portfolio %s holds artifacts of type %q, not %q", pl.Portfolio, c.Type, a.Type)
	}
	pl.ArtifactEntity, pl.ArtifactProject, pl.Type = a.Entity, a.Project, a.Type
	aliases := slices.DeleteFunc(slices.Clone(pl.Aliases), func(x string) bool { return x == "latest" })
	pl.VersionIndex = -1
	if c != nil {
		pl.VersionIndex = c.LinkIndex(a.ID)
	}
	if pl.VersionIndex < 0 {
		pl.VersionIndex = 0
		if c != nil {
			pl.VersionIndex = len(c.Versions)
		}
		aliases = append(aliases, "latest")
	}
	var add []string
	for _, al := range aliases {
		if (c == nil || c.Aliases[al] != a.ID) && !slices.Contains(add, al) {
			add = append(add, al)
		}
	}
	if c != nil && c.LinkIndex(a.ID) >= 0 && len(add) == 0 {
		return accept() // linked before, with these aliases
	}
	pl.Aliases = add
	return accept(pr.in(pl))
}
