package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

// Ops of run search, charts and export.
const (
	OpSearchRuns = "search_runs" // a page of runs: RunPage
	OpRunGroups  = "run_groups"  // run counts by a field: RunGroups
	OpDownsample = "downsample"  // a metric in N buckets: []projections.Bucket
	OpExport     = "export"      // one page of a history export: ExportPage
	OpRunChanges = "run_changes" // runs changed after a sequence: projections.RunChanges
)

// RunsRequest carries the parameters of the run ops (in Request.Runs).
type RunsRequest struct {
	Search  projections.RunQuery `json:"search"`
	GroupBy string               `json:"group_by,omitempty"`
	// Aggregates of a group count: summary.<metric> names.
	Aggregates []string `json:"aggregates,omitempty"`
	// Buckets of a downsample.
	Buckets int `json:"buckets,omitempty"`
	// Export: format, metrics, first step, CSV header, page size.
	Format   string   `json:"format,omitempty"`
	Metrics  []string `json:"metrics,omitempty"`
	From     int64    `json:"from,omitempty"`
	Header   bool     `json:"header,omitempty"`
	MaxBytes int      `json:"max_bytes,omitempty"`
	// Run changes: after this sequence; wait up to WaitMS (at most
	// MaxChangesWait) for a change, or for the total of matching runs to
	// differ from Total (-1: unknown).
	Since  uint64 `json:"since,omitempty"`
	WaitMS int    `json:"wait_ms,omitempty"`
	Total  int    `json:"total,omitempty"`
}

// RunGroups answers OpRunGroups.
type RunGroups struct {
	By     string                   `json:"by"`
	Total  int                      `json:"total"`
	Groups []projections.GroupCount `json:"groups"`
}

// ExportPage is one page of an export read over NATS: the text and where
// the next page starts.
type ExportPage struct {
	Text string `json:"text"`
	projections.ExportResult
}

// ExportPageBytes is the size of an export page over NATS (the reply limit
// is 8 MiB; JSON escaping of NDJSON text can grow it).
const ExportPageBytes = 2 << 20

// MaxBuckets bounds a downsample.
const MaxBuckets = 100_000

// readRuns answers the run ops; ok is false for other ops.
func (s *Service) readRuns(ctx context.Context, r Request) (v any, ok bool, err error) {
	switch r.Op {
	case OpRunChanges:
		v, err := s.runChanges(ctx, r)
		return v, true, err
	case OpSearchRuns, OpRunGroups, OpDownsample, OpExport:
	default:
		return nil, false, nil
	}
	rr := r.Runs
	if rr == nil {
		rr = &RunsRequest{}
	}
	switch r.Op {
	case OpSearchRuns:
		page, err := s.Store.SearchRuns(r.Entity, r.Project, rr.Search)
		return page, true, badQuery(err)
	case OpRunGroups:
		groups, total, err := s.Store.CountRuns(r.Entity, r.Project, rr.Search, rr.GroupBy, rr.Aggregates...)
		return RunGroups{By: rr.GroupBy, Total: total, Groups: groups}, true, badQuery(err)
	case OpDownsample:
		run, err := s.run(r)
		if err != nil {
			return nil, true, err
		}
		if r.Metric == "" {
			return nil, true, errs.New(errs.Invalid, "invalid", "name the metric to chart with ?metric=")
		}
		if rr.Buckets <= 0 || rr.Buckets > MaxBuckets {
			return nil, true, errs.New(errs.Invalid, "invalid", "buckets must be from 1 to %d", MaxBuckets)
		}
		maxStep := r.MaxStep
		if maxStep <= 0 {
			maxStep = -1
		}
		if r.MinStep < 0 || (maxStep >= 0 && maxStep < r.MinStep) {
			return nil, true, errs.New(errs.Invalid, "invalid", "step range [%d, %d] is empty or negative", r.MinStep, r.MaxStep)
		}
		b, err := s.Store.Downsample(r.Entity, r.Project, run.ID, r.Metric, r.MinStep, maxStep, rr.Buckets)
		return b, true, err
	}
	// OpExport: one page.
	run, err := s.run(r)
	if err != nil {
		return nil, true, err
	}
	if err := CheckExport(rr); err != nil {
		return nil, true, err
	}
	var buf bytes.Buffer
	res, err := s.Store.Export(r.Entity, r.Project, run.ID, projections.ExportOptions{Metrics: rr.Metrics, From: rr.From,
		Format: rr.Format, Header: rr.Header, MaxBytes: min(max(rr.MaxBytes, 1), ExportPageBytes)}, &buf)
	return ExportPage{Text: buf.String(), ExportResult: res}, true, err
}

// MaxChangesWait bounds how long a run-changes read waits for a change.
const MaxChangesWait = 25 * time.Second

// runChanges answers the runs changed after Since, waiting (a long poll)
// until the read model applies something that changes the answer. Since 0
// answers at once: the current sequence, to start from.
func (s *Service) runChanges(ctx context.Context, r Request) (projections.RunChanges, error) {
	rr := r.Runs
	if rr == nil {
		rr = &RunsRequest{Total: -1}
	}
	ctx, cancel := context.WithTimeout(ctx, min(time.Duration(rr.WaitMS)*time.Millisecond, MaxChangesWait))
	defer cancel()
	seen := rr.Since
	for {
		ch, err := s.Store.RunChanges(r.Entity, r.Project, rr.Since, rr.Search)
		if rr.Since == 0 { // a new client: where to start from
			ch.Runs, ch.More = []json.RawMessage{}, false
		}
		if err != nil || len(ch.Runs) > 0 || ch.Total != rr.Total || rr.Since == 0 {
			return ch, badQuery(err)
		}
		// Nothing for this query yet: wait for the next commit.
		seen = max(seen, ch.Seq)
		if s.Store.WaitSeq(ctx, seen+1) != nil {
			return ch, nil
		}
	}
}

func CheckExport(rr *RunsRequest) error {
	if rr.Format != "" && rr.Format != "ndjson" && rr.Format != "csv" {
		return errs.New(errs.Invalid, "invalid", "format must be ndjson or csv, not %q", rr.Format)
	}
	if rr.From < 0 {
		return errs.New(errs.Invalid, "invalid", "from must not be negative")
	}
	return nil
}

func badQuery(err error) error {
	var bq projections.ErrBadQuery
	if errors.As(err, &bq) {
		return errs.New(errs.Invalid, "invalid_filter", "%v", bq.Err)
	}
	return err
}

// Exporter streams a whole export to w; the in-process Service does, so
// the all-in-one streams straight from the read model.
type Exporter interface {
	Export(ctx context.Context, r Request, w io.Writer, started func()) error
}

// Export implements Exporter: it authorizes the read like any other, then
// streams the history; started is called before the first byte.
func (s *Service) Export(ctx context.Context, r Request, w io.Writer, started func()) error {
	r.Op = OpRun
	data, err := s.Read(ctx, r)
	if err != nil {
		return err
	}
	var run struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &run); err != nil {
		return err
	}
	rr := r.Runs
	if rr == nil {
		rr = &RunsRequest{}
	}
	if err := CheckExport(rr); err != nil {
		return err
	}
	started()
	_, err = s.Store.Export(r.Entity, r.Project, run.ID, projections.ExportOptions{Metrics: rr.Metrics, From: rr.From,
		Format: rr.Format, Header: true}, w)
	return err
}

// CommaList splits a comma-separated list, dropping empty items.
func CommaList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var validState = map[string]bool{events.StateRunning: true, events.StateFinished: true, events.StateFailed: true,
	events.StateKilled: true, events.StateCrashed: true}

// ParseRunQuery reads the run search syntax of GET .../runs (see README):
// job_type, group, owner, state (comma: any of), tag (repeatable: all of),
// tags_any, tags_all, filter (repeatable) and bare config./summary.
// comparisons such as config.optimizer.lr>=0.001, search (name or id
// contains), sort ([-]field), fields (comma list: config.<path>,
// summary.<metric>, metrics), limit, cursor.
func ParseRunQuery(rawQuery string) (projections.RunQuery, error) {
	var q projections.RunQuery
	bad := func(format string, args ...any) error {
		return errs.New(errs.Invalid, "invalid_filter", format, args...)
	}
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		s, err := url.QueryUnescape(part)
		if err != nil {
			return q, bad("query part %q is not URL-encoded correctly", part)
		}
		if strings.HasPrefix(s, "config.") || strings.HasPrefix(s, "summary.") {
			c, err := projections.ParseCond(s)
			if err != nil {
				return q, bad("%v", err)
			}
			q.Conds = append(q.Conds, c)
			continue
		}
		key, val, _ := strings.Cut(s, "=")
		switch key {
		case "job_type":
			q.JobType = val
		case "group":
			q.Group = val
		case "owner":
			q.Owner = val
		case "state":
			for _, st := range CommaList(val) {
				if !validState[st] {
					return q, bad("state %q: use running, finished, failed, killed or crashed (comma separated for any of them)", st)
				}
				q.States = append(q.States, st)
			}
		case "tag":
			q.TagsAll = append(q.TagsAll, val)
		case "tags_all":
			q.TagsAll = append(q.TagsAll, CommaList(val)...)
		case "tags_any":
			q.TagsAny = append(q.TagsAny, CommaList(val)...)
		case "filter":
			c, err := projections.ParseCond(val)
			if err != nil {
				return q, bad("%v", err)
			}
			q.Conds = append(q.Conds, c)
		case "search":
			q.Search = val
		case "fields":
			for _, f := range strings.Split(val, ",") {
				if f = strings.TrimSpace(f); f != "" {
					q.Fields = append(q.Fields, f)
				}
			}
		case "sort":
			q.Sort, q.Desc = strings.CutPrefix(val, "-")
		case "cursor":
			q.Cursor = val
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > projections.MaxRunLimit {
				return q, bad("limit must be from 1 to %d, not %q", projections.MaxRunLimit, val)
			}
			q.Limit = n
		}
	}
	if err := q.Validate(); err != nil {
		return q, bad("%v", err)
	}
	return q, nil
}
