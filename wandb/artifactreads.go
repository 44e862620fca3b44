package wandb

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// Read-only artifact lookups (ArtifactByID, ArtifactMembershipByName,
// ArtifactType, the manifest and file URL queries) answer from the read
// model through the read service, like run reads. The checks
// of the write path (dedup, pending, commit, use, GC) stay on the policy
// state, which the lookups consult only for how fresh to read.

// freshness: a read waits until the read model has applied what the
// write side's policy state has of the project (the same rule as run
// reads: RunInfo.Seq), so that artifact.wait() right after CommitArtifact,
// or a lookup right after a native delete, sees the write.
func (s *Server) projectSeq(entity, project string) uint64 {
	return s.in.Run(entity, project, "").Seq
}

// versionSeq is projectSeq of the project of version id (0 if unknown).
func (s *Server) versionSeq(id string) (seq uint64) {
	s.in.View(func(st *policy.State) {
		if a, _ := st.Artifact(id); a != nil {
			seq = st.Seq(a.Entity, a.Project)
		}
	})
	return seq
}

// shown reports whether err is a read that does not show (not found, or
// a name the read service refuses): W&B answers null for those.
func shown(err error) (hidden bool, code string) {
	if e, ok := errs.As(err); ok && (e.Kind == errs.NotFound || e.Kind == errs.Invalid) {
		return true, e.Code
	}
	return false, ""
}

// lookup reads a version through the read service: by id alone (req.Version
// only; pending versions too) or by entity/project/collection and vN or
// alias. ok is false when it does not show to c; projectHidden says the
// project itself does not.
func (s *Server) lookup(ctx context.Context, c *caller, req query.Request) (a policy.Artifact, ok, projectHidden bool, err error) {
	a, _, ok, projectHidden, err = s.lookupLink(ctx, c, req)
	return a, ok, projectHidden, err
}

// lookupLink is lookup, with the portfolio link the version was read
// through (nil for a version of its own collection).
func (s *Server) lookupLink(ctx context.Context, c *caller, req query.Request) (a policy.Artifact, link *query.LinkView, ok, projectHidden bool, err error) {
	req.KeyHash, req.Op = c.keyHash, query.OpArtifact
	if req.Entity == "" {
		req.MinSeq = s.versionSeq(req.Version)
	} else {
		req.MinSeq = s.projectSeq(req.Entity, req.Project)
	}
	data, err := s.reader.Read(ctx, req)
	if err != nil {
		if hidden, code := shown(err); hidden {
			return a, nil, false, code == "project_not_found" || code == "invalid", nil
		}
		return a, nil, false, false, err
	}
	var v query.ArtifactView
	if err := json.Unmarshal(data, &v); err != nil {
		return a, nil, false, false, err
	}
	a = policy.Artifact{ID: v.ID, Entity: v.Entity, Project: v.Project, Collection: v.Collection, Type: v.Type, Digest: v.Digest,
		State: v.State, Index: v.Index, Aliases: slices.Clone(v.Aliases), Description: v.Description, Metadata: v.Metadata,
		Size: v.Size, FileCount: v.FileCount, ManifestMD5: v.ManifestMD5, Created: v.CreatedAt}
	if v.CommittedAt != nil {
		a.Committed = *v.CommittedAt
	}
	if v.Run != nil {
		a.Run = v.Run.Run
	}
	return a, v.Link, true, false, nil
}

func idReq(id string) query.Request { return query.Request{Version: id} }

func nameReq(entity, project, coll, alias string) query.Request {
	return query.Request{Entity: entity, Project: project, Collection: coll, Version: alias}
}

// collectionType answers a collection's type ("" when there is none yet);
// visible is false when c may not read the project.
func (s *Server) collectionType(ctx context.Context, c *caller, entity, project, coll string) (typ string, visible bool, err error) {
	data, err := s.reader.Read(ctx, query.Request{KeyHash: c.keyHash, Op: query.OpArtifactCollections, Entity: entity, Project: project,
		MinSeq: s.projectSeq(entity, project)})
	if err != nil {
		if hidden, _ := shown(err); hidden {
			return "", false, nil
		}
		return "", false, err
	}
	var colls []query.CollectionView
	if err := json.Unmarshal(data, &colls); err != nil {
		return "", false, err
	}
	for _, cv := range colls {
		if cv.Name == coll {
			return cv.Type, true, nil
		}
	}
	return "", true, nil
}
