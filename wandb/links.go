package wandb

import (
	"cmp"
	"context"
	"encoding/json"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// LinkArtifact ($input form from Python, flat form from wandb-core) links
// a committed version into a portfolio of a project (created if needed),
// answering the version's index there. Registries (wandb-registry-*
// projects of an organization, FetchOrgInfoFromEntity) are not supported:
// Logbook has no organizations.
func (s *Server) linkArtifact(ctx context.Context, c *caller, v vars) (any, error) {
	in := v
	if _, ok := v["input"]; ok {
		var err error
		if in, err = v.input(); err != nil {
			return nil, gqlErrorf("invalid", "%v", err)
		}
	}
	id, _, _ := in.str("artifactID")
	if id == "" {
		id, _, _ = in.str("artifactId")
	}
	portfolio, _, _ := in.str("artifactPortfolioName")
	entity, _, _ := in.str("entityName")
	project, _, _ := in.str("projectName")
	entity, project = cmp.Or(entity, c.user.Username), cmp.Or(project, DefaultProject)
	if err := events.ValidateEntity(entity); err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	if err := events.ValidateProject(project); err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	aliases, err := linkAliases(in["aliases"])
	if err != nil {
		return nil, err
	}
	if !s.in.Run(entity, project, "").ProjectExists {
		if err := s.createProject(ctx, c, entity, project); err != nil {
			return nil, err
		}
	}
	if err := s.proposeArtifact(ctx, c, events.Event{Entity: entity, Project: project,
		Payload: events.ArtifactLinkedV1{ArtifactID: id, Portfolio: portfolio, Aliases: aliases}}); err != nil {
		return nil, err
	}
	index := -1
	s.in.View(func(st *policy.State) {
		if p, ok := st.Project(entity, project); ok && p.Collections[portfolio] != nil {
			index = p.Collections[portfolio].LinkIndex(id)
		}
	})
	if index < 0 {
		return nil, gqlErrorf("unavailable", "the link was recorded but is not visible yet; retry")
	}
	res := map[string]any{"__typename": "ArtifactCollectionMembership", "versionIndex": index}
	// Python aliases the field "result"; wandb-core reads "linkArtifact".
	return map[string]any{"result": res, "linkArtifact": res}, nil
}

// linkAliases reads LinkArtifact's aliases: [{artifactCollectionName,
// alias}] or plain strings.
func linkAliases(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, gqlErrorf("invalid", "aliases must be a list")
	}
	var out []string
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) != nil {
			var o struct {
				Alias string `json:"alias"`
			}
			if err := json.Unmarshal(it, &o); err != nil {
				return nil, gqlErrorf("invalid", "aliases must be strings or {artifactCollectionName, alias}")
			}
			s = o.Alias
		}
		out = append(out, s)
	}
	return out, nil
}

// linkMembership is membership(a) as portfolio l links it: its index,
// aliases and collection there.
func linkMembership(a policy.Artifact, l *query.LinkView) map[string]any {
	m := membership(a)
	if l == nil {
		return m
	}
	coll := map[string]any{"__typename": "ArtifactPortfolio", "id": gid("ArtifactPortfolio", l.Entity+"/"+l.Project+"/"+l.Portfolio),
		"name": l.Portfolio, "project": projectNode(l.Entity, l.Project)}
	aliases := []any{}
	for _, al := range l.Aliases {
		aliases = append(aliases, map[string]any{"__typename": "ArtifactAlias", "id": gid("ArtifactAlias", l.Portfolio+"/"+a.ID+":"+al), "alias": al})
	}
	m["id"] = gid("ArtifactCollectionMembership", l.Entity+"/"+l.Project+"/"+l.Portfolio+"/"+a.ID)
	m["versionIndex"], m["aliases"], m["artifactCollection"] = l.Index, aliases, coll
	return m
}
