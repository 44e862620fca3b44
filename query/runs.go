package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// Ops of run search, charts and export.
const (
	OpSearchRuns = "search_runs" // a page of runs: RunPage
	OpRunGroups  = "run_groups"  // run counts by a field: RunGroups
	OpDownsample = "downsample"  // a metric in N buckets: []projections.Bucket
	OpExport     = "export"      // one page of a history export: ExportPage
)

// RunsRequest carries the parameters of the run ops (in Request.Runs).
type RunsRequest struct {
	Search  projections.RunQuery `json:"search"`
	GroupBy string               `json:"group_by,omitempty"`
	// Buckets of a downsample.
	Buckets int `json:"buckets,omitempty"`
	// Export: format, metrics, first step, CSV header, page size.
	Format   string   `json:"format,omitempty"`
	Metrics  []string `json:"metrics,omitempty"`
	From     int64    `json:"from,omitempty"`
	Header   bool     `json:"header,omitempty"`
	MaxBytes int      `json:"max_bytes,omitempty"`
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
		groups, total, err := s.Store.CountRuns(r.Entity, r.Project, rr.Search, rr.GroupBy)
		return RunGroups{By: rr.GroupBy, Total: total, Groups: groups}, true, badQuery(err)
	case OpDownsample:
		run, err := s.run(r)
		if err != nil {
			return nil, true, err
		}
		if r.Metric == "" {
			return nil, true, errorf(400, "invalid", "name the metric to chart with ?metric=")
		}
		if rr.Buckets <= 0 || rr.Buckets > MaxBuckets {
			return nil, true, errorf(400, "invalid", "buckets must be from 1 to %d", MaxBuckets)
		}
		maxStep := r.MaxStep
		if maxStep <= 0 {
			maxStep = -1
		}
		if r.MinStep < 0 || (maxStep >= 0 && maxStep < r.MinStep) {
			return nil, true, errorf(400, "invalid", "step range [%d, %d] is empty or negative", r.MinStep, r.MaxStep)
		}
		b, err := s.Store.Downsample(r.Entity, r.Project, run.ID, r.Metric, r.MinStep, maxStep, rr.Buckets)
		return b, true, err
	}
	// OpExport: one page.
	run, err := s.run(r)
	if err != nil {
		return nil, true, err
	}
	if err := checkExport(rr); err != nil {
		return nil, true, err
	}
	var buf bytes.Buffer
	res, err := s.Store.Export(r.Entity, r.Project, run.ID, projections.ExportOptions{Metrics: rr.Metrics, From: rr.From,
		Format: rr.Format, Header: rr.Header, MaxBytes: min(max(rr.MaxBytes, 1), ExportPageBytes)}, &buf)
	return ExportPage{Text: buf.String(), ExportResult: res}, true, err
}

func checkExport(rr *RunsRequest) error {
	if rr.Format != "" && rr.Format != "ndjson" && rr.Format != "csv" {
		return errorf(400, "invalid", "format must be ndjson or csv, not %q", rr.Format)
	}
	if rr.From < 0 {
		return errorf(400, "invalid", "from must not be negative")
	}
	return nil
}

func badQuery(err error) error {
	var bq projections.ErrBadQuery
	if errors.As(err, &bq) {
		return errorf(400, "invalid_filter", "%v", bq.Err)
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
	if err := checkExport(rr); err != nil {
		return err
	}
	started()
	_, err = s.Store.Export(r.Entity, r.Project, run.ID, projections.ExportOptions{Metrics: rr.Metrics, From: rr.From,
		Format: rr.Format, Header: true}, w)
	return err
}

// request builds a read request from the path, the API key and min_seq.
func (h *Handler) request(r *http.Request, op string) (Request, error) {
	key, ok := httpx.APIKey(r)
	if !ok {
		return Request{}, httpx.Errorf(401, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'")
	}
	req := Request{KeyHash: policy.HashKey(key), Op: op, Entity: r.PathValue("entity"), Project: r.PathValue("project"),
		Run: r.PathValue("run"), Metric: r.URL.Query().Get("metric"), Runs: &RunsRequest{}}
	minSeq := r.URL.Query().Get("min_seq")
	if minSeq == "" {
		minSeq = r.Header.Get("X-Logbook-Min-Seq")
	}
	if minSeq != "" {
		n, err := strconv.ParseUint(minSeq, 10, 64)
		if err != nil {
			return req, httpx.Errorf(400, "invalid", "min_seq must be a non-negative integer, not %q", minSeq)
		}
		req.MinSeq = n
	}
	return req, nil
}

func intParam(q url.Values, name string, dst *int64) error {
	if v := q.Get(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return httpx.Errorf(400, "invalid", "query parameter %s must be a non-negative integer, not %q", name, v)
		}
		*dst = n
	}
	return nil
}

func commaList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseRunQuery reads the run search syntax of GET .../runs (see README):
// job_type, group, owner, state (comma: any of), tag (repeatable: all of),
// tags_any, tags_all, filter (repeatable) and bare config./summary.
// comparisons such as config.optimizer.lr>=0.001, sort ([-]field), limit,
// cursor.
func ParseRunQuery(rawQuery string) (projections.RunQuery, error) {
	var q projections.RunQuery
	bad := func(format string, args ...any) error { return httpx.Errorf(400, "invalid_filter", format, args...) }
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
			q.States = append(q.States, commaList(val)...)
		case "tag":
			q.TagsAll = append(q.TagsAll, val)
		case "tags_all":
			q.TagsAll = append(q.TagsAll, commaList(val)...)
		case "tags_any":
			q.TagsAny = append(q.TagsAny, commaList(val)...)
		case "filter":
			c, err := projections.ParseCond(val)
			if err != nil {
				return q, bad("%v", err)
			}
			q.Conds = append(q.Conds, c)
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

// searchRuns serves GET .../runs: a JSON array of runs (the page), with the
// total count in X-Total-Count and the next page's cursor in X-Next-Cursor
// (and a Link header, rel="next").
func (h *Handler) searchRuns(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, OpSearchRuns)
	if err == nil {
		req.Runs.Search, err = ParseRunQuery(r.URL.RawQuery)
	}
	if err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	data, err := h.Reader.Read(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	var page struct {
		Runs       json.RawMessage `json:"runs"`
		Total      int             `json:"total"`
		NextCursor string          `json:"next_cursor"`
	}
	if err := json.Unmarshal(data, &page); err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(page.Total))
	if page.NextCursor != "" {
		w.Header().Set("X-Next-Cursor", page.NextCursor)
		q := r.URL.Query()
		q.Set("cursor", page.NextCursor)
		next := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
	}
	httpx.WriteRaw(w, http.StatusOK, page.Runs)
}

// runGroups serves GET .../run-groups?by=job_type|group|state|owner with
// the same filters as GET .../runs.
func (h *Handler) runGroups(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, OpRunGroups)
	if err == nil {
		req.Runs.Search, err = ParseRunQuery(r.URL.RawQuery)
		req.Runs.GroupBy = r.URL.Query().Get("by")
	}
	h.answer(w, r, req, err)
}

// sampled serves GET .../runs/{run}/sampled?metric=&buckets=&min_step=&max_step=.
func (h *Handler) sampled(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, OpDownsample)
	q := r.URL.Query()
	var buckets int64 = 1000
	for _, e := range []error{err, intParam(q, "buckets", &buckets), intParam(q, "min_step", &req.MinStep), intParam(q, "max_step", &req.MaxStep)} {
		if e != nil && err == nil {
			err = e
		}
	}
	req.Runs.Buckets = int(buckets)
	h.answer(w, r, req, err)
}

func (h *Handler) answer(w http.ResponseWriter, r *http.Request, req Request, err error) {
	if err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	data, err := h.Reader.Read(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	httpx.WriteRaw(w, http.StatusOK, data)
}

// export serves GET .../runs/{run}/export?format=ndjson|csv&metrics=a,b:
// the whole history, streamed. In-process it streams from the read model;
// through the NATS read service it is fetched in pages of ExportPageBytes
// and each page is written as it arrives.
func (h *Handler) export(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, OpExport)
	q := r.URL.Query()
	if err == nil {
		req.Runs.Format = q.Get("format")
		req.Runs.Metrics = commaList(q.Get("metrics"))
		err = intParam(q, "min_step", &req.Runs.From)
	}
	if err == nil {
		err = checkExport(req.Runs)
	}
	if err != nil {
		httpx.WriteError(w, h.Log, err)
		return
	}
	started := false
	start := func() {
		started = true
		ext, ct := "ndjson", "application/x-ndjson"
		if req.Runs.Format == "csv" {
			ext, ct = "csv", "text/csv; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", `attachment; filename="`+req.Run+"."+ext+`"`)
		w.WriteHeader(http.StatusOK)
	}
	if ex, ok := h.Reader.(Exporter); ok {
		err = ex.Export(r.Context(), req, w, start)
	} else {
		err = h.exportPaged(r.Context(), req, w, start)
	}
	if err != nil {
		if !started {
			httpx.WriteError(w, h.Log, err)
			return
		}
		h.Log.Warn("export stopped", "run", req.Run, "err", err)
	}
}

func (h *Handler) exportPaged(ctx context.Context, req Request, w io.Writer, start func()) error {
	req.Runs.Header, req.Runs.MaxBytes = true, ExportPageBytes
	for first := true; ; first = false {
		data, err := h.Reader.Read(ctx, req)
		if err != nil {
			return err
		}
		var page ExportPage
		if err := json.Unmarshal(data, &page); err != nil {
			return err
		}
		if first {
			start()
		}
		if _, err := io.WriteString(w, page.Text); err != nil {
			return err
		}
		if !page.More {
			return nil
		}
		req.Runs.From, req.Runs.Header = page.Next, false
	}
}
