package query

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

// AsOf is a project as it was at a point of the log: its members and
// pending invites, and its runs with their summaries.
type AsOf struct {
	// Seq is the last stream sequence of the project's (or its users')
	// events at or before the requested point.
	Seq     uint64       `json:"seq"`
	Time    *time.Time   `json:"time,omitempty"`
	Project *ProjectView `json:"project"` // null before the project existed
	Members []Member     `json:"members"`
	Runs    []RunView    `json:"runs"`
	// Artifacts are the project's artifact collections then.
	Artifacts []CollectionView `json:"artifacts"`
}

// asOf answers the project as of r.AsOfSeq and/or r.AsOfTime by replaying
// its events into a temporary in-memory read model. The caller is
// authorized against the project as it is now, and sees its whole past.
func (s *Service) asOf(ctx context.Context, r Request, role events.Role) (any, error) {
	if s.Log == nil {
		return nil, errs.New(errs.NotImplemented, "not_available", "time travel is not available on this read service")
	}
	if r.AsOfSeq == 0 && r.AsOfTime.IsZero() {
		return nil, errs.New(errs.Invalid, "invalid", "give a stream sequence (?seq=N) or a time (?time=RFC3339)")
	}
	st, err := projections.AsOf(ctx, s.Log, s.Subjects, r.Entity, r.Project, r.AsOfSeq, r.AsOfTime)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	out := AsOf{Seq: st.Seq(), Members: []Member{}, Runs: []RunView{}, Artifacts: []CollectionView{}}
	if !r.AsOfTime.IsZero() {
		out.Time = &r.AsOfTime
	}
	proj, err := st.Project(r.Entity, r.Project)
	if errors.Is(err, projections.ErrNotFound) {
		return out, nil // the project did not exist then
	}
	if err != nil {
		return nil, err
	}
	out.Project, out.Members = &ProjectView{Project: proj, Role: role}, members(proj)
	runs, err := st.Runs(r.Entity, r.Project, projections.RunFilter{})
	if err != nil {
		return nil, err
	}
	for i := range runs {
		out.Runs = append(out.Runs, RunView{Run: runs[i], Summary: runs[i].Summary()})
	}
	colls, err := st.ArtifactCollections(r.Entity, r.Project)
	for _, c := range colls {
		out.Artifacts = append(out.Artifacts, collectionView(c))
	}
	return out, err
}

func ParseAsOf(q url.Values, req *Request) error {
	if v := q.Get("seq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return errs.New(errs.Invalid, "invalid", "seq must be a positive stream sequence, not %q", v)
		}
		req.AsOfSeq = n
	}
	if v := q.Get("time"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errs.New(errs.Invalid, "invalid", "time must be RFC 3339 (2026-11-27T12:00:00Z), not %q", v)
		}
		req.AsOfTime = t
	}
	return nil
}
