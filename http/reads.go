package http

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// Reads serves the HTTP read API under /api/v1.
type Reads struct {
	Reader query.Reader
	Log    *slog.Logger
}

// Register adds the read routes to mux.
func (h *Reads) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/whoami", h.serve(query.OpWhoAmI))
	mux.HandleFunc("GET /api/v1/projects", h.serve(query.OpProjects))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}", h.serve(query.OpProject))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/members", h.serve(query.OpMembers))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs", h.searchRuns)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/run-groups", h.runGroups)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/events", h.runEvents)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/sampled", h.sampled)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/export", h.export)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}", h.serve(query.OpRun))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/history", h.serve(query.OpHistory))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/lines", h.serve(query.OpLines))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/asof", h.serve(query.OpAsOf))
}

func (h *Reads) serve(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := APIKey(r)
		if !ok {
			WriteError(w, h.Log, errs.New(errs.Unauthenticated, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'"))
			return
		}
		q := r.URL.Query()
		req := query.Request{
			KeyHash: policy.HashKey(key), Op: op,
			Entity: r.PathValue("entity"), Project: r.PathValue("project"), Run: r.PathValue("run"),
			Filter: projections.RunFilter{JobType: q.Get("job_type"), Tag: q.Get("tag"), State: q.Get("state"),
				Owner: q.Get("owner"), Group: q.Get("group")},
			Metric: q.Get("metric"), File: q.Get("file"),
		}
		var err error
		parse := func(name string, dst *int64) {
			if v := q.Get(name); v != "" && err == nil {
				if *dst, err = strconv.ParseInt(v, 10, 64); err != nil {
					err = errs.New(errs.Invalid, "invalid", "query parameter %s must be an integer, not %q", name, v)
				}
			}
		}
		var limit, minSeq int64
		parse("min_step", &req.MinStep)
		parse("max_step", &req.MaxStep)
		parse("limit", &limit)
		parse("min_seq", &minSeq)
		parse("offset", &req.Offset)
		if v := r.Header.Get("X-Logbook-Min-Seq"); v != "" && q.Get("min_seq") == "" && err == nil {
			if minSeq, err = strconv.ParseInt(v, 10, 64); err != nil {
				err = errs.New(errs.Invalid, "invalid", "header X-Logbook-Min-Seq must be an integer, not %q", v)
			}
		}
		if err != nil {
			WriteError(w, h.Log, err)
			return
		}
		if limit < 0 || minSeq < 0 {
			WriteError(w, h.Log, errs.New(errs.Invalid, "invalid", "limit and min_seq must not be negative"))
			return
		}
		req.Limit, req.MinSeq = int(limit), uint64(minSeq)
		if op == query.OpAsOf {
			err = query.ParseAsOf(q, &req)
		}
		h.answer(w, r, req, err)
	}
}

// request builds a read request from the path, the API key and min_seq.
func (h *Reads) request(r *http.Request, op string) (query.Request, error) {
	return readRequest(r, op)
}

// readRequest builds a read request from the API key, the path
// ({entity}, {project}, {run}, {collection}, {version}), ?metric= and
// ?min_seq= (or X-Logbook-Min-Seq). Runs is never nil.
func readRequest(r *http.Request, op string) (query.Request, error) {
	req := query.Request{Op: op, Entity: r.PathValue("entity"), Project: r.PathValue("project"), Run: r.PathValue("run"),
		Collection: r.PathValue("collection"), Version: r.PathValue("version"), Metric: r.URL.Query().Get("metric"),
		Runs: &query.RunsRequest{}}
	key, ok := APIKey(r)
	if !ok {
		return req, errs.E(errs.Unauthenticated, "send your API key as 'Authorization: Bearer <key>'")
	}
	req.KeyHash = policy.HashKey(key)
	minSeq := r.URL.Query().Get("min_seq")
	if minSeq == "" {
		minSeq = r.Header.Get("X-Logbook-Min-Seq")
	}
	if minSeq != "" {
		n, err := strconv.ParseUint(minSeq, 10, 64)
		if err != nil {
			return req, errs.New(errs.Invalid, "invalid", "min_seq must be a non-negative integer, not %q", minSeq)
		}
		req.MinSeq = n
	}
	return req, nil
}

func intParam(q url.Values, name string, dst *int64) error {
	if v := q.Get(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errs.New(errs.Invalid, "invalid", "query parameter %s must be a non-negative integer, not %q", name, v)
		}
		*dst = n
	}
	return nil
}

// RunEventsWait is how long one read of a run-events stream waits for a
// change before the stream sends a keep-alive comment.
var RunEventsWait = 15 * time.Second

// runEvents serves GET .../events: Server-Sent Events of the project's
// runs as they change, for the same search as GET .../runs (filters, search,
// fields; sort and paging do not apply). Each event is "runs" with data
// {seq, total, runs, more} and id = seq; the first tells the current seq
// and total (and, when resuming, the runs changed since). A client that
// reconnects with Last-Event-ID (or ?since=) misses nothing; more=true
// says too much changed to list: reload. ?once=1 answers the same at once
// as one JSON document (for clients that poll).
func (h *Reads) runEvents(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpRunChanges)
	q := r.URL.Query()
	if err == nil {
		req.Runs.Search, err = query.ParseRunQuery(r.URL.RawQuery)
	}
	since := r.Header.Get("Last-Event-ID")
	if since == "" {
		since = q.Get("since")
	}
	if since != "" && err == nil {
		if req.Runs.Since, err = strconv.ParseUint(since, 10, 64); err != nil {
			err = errs.New(errs.Invalid, "invalid", "since (Last-Event-ID) must be a sequence number, not %q", since)
		}
	}
	flusher, ok := w.(http.Flusher)
	if err == nil && !ok {
		err = errs.E(errs.Internal, "this connection cannot stream")
	}
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	// The first read authorizes, before a byte of the stream is written.
	req.Runs.Total = -1
	data, err := h.Reader.Read(r.Context(), req)
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	if q.Get("once") == "1" {
		WriteRaw(w, http.StatusOK, data)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	req.MinSeq = 0
	for {
		var ch struct {
			Seq   uint64            `json:"seq"`
			Total int               `json:"total"`
			Runs  []json.RawMessage `json:"runs"`
		}
		if err := json.Unmarshal(data, &ch); err != nil {
			h.Log.Warn("run events", "err", err)
			return
		}
		if len(ch.Runs) > 0 || ch.Total != req.Runs.Total || req.Runs.Since == 0 {
			if _, err := fmt.Fprintf(w, "id: %d\nevent: runs\ndata: %s\n\n", ch.Seq, data); err != nil {
				return
			}
		} else if _, err := io.WriteString(w, ": waiting\n\n"); err != nil {
			return
		}
		flusher.Flush()
		req.Runs.Since, req.Runs.Total, req.Runs.WaitMS = ch.Seq, ch.Total, int(RunEventsWait/time.Millisecond)
		if data, err = h.Reader.Read(r.Context(), req); err != nil {
			if r.Context().Err() == nil {
				msg, _ := json.Marshal(err.Error())
				_, _ = fmt.Fprintf(w, "event: error\ndata: {\"message\":%s}\n\n", msg)
			}
			return
		}
	}
}

// searchRuns serves GET .../runs: a JSON array of runs (the page), with the
// total count in X-Total-Count and the next page's cursor in X-Next-Cursor
// (and a Link header, rel="next").
func (h *Reads) searchRuns(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpSearchRuns)
	if err == nil {
		req.Runs.Search, err = query.ParseRunQuery(r.URL.RawQuery)
	}
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	data, err := h.Reader.Read(r.Context(), req)
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	var page struct {
		Runs       json.RawMessage `json:"runs"`
		Total      int             `json:"total"`
		NextCursor string          `json:"next_cursor"`
	}
	if err := json.Unmarshal(data, &page); err != nil {
		WriteError(w, h.Log, err)
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
	WriteRaw(w, http.StatusOK, page.Runs)
}

// runGroups serves GET .../run-groups?by=job_type|group|state|owner|tag|config.<path>
// (&agg=summary.<metric>, repeatable or comma-separated) with the same
// filters as GET .../runs.
func (h *Reads) runGroups(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpRunGroups)
	if err == nil {
		req.Runs.Search, err = query.ParseRunQuery(r.URL.RawQuery)
		req.Runs.GroupBy = r.URL.Query().Get("by")
		for _, a := range r.URL.Query()["agg"] {
			req.Runs.Aggregates = append(req.Runs.Aggregates, query.CommaList(a)...)
		}
	}
	h.answer(w, r, req, err)
}

// sampled serves GET .../runs/{run}/sampled?metric=&buckets=&min_step=&max_step=.
func (h *Reads) sampled(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpDownsample)
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

func (h *Reads) answer(w http.ResponseWriter, r *http.Request, req query.Request, err error) {
	answer(w, r, h.Reader, h.Log, req, err)
}

// answer reads req (unless building it failed with err) and writes the
// answer or the error.
func answer(w http.ResponseWriter, r *http.Request, reader query.Reader, log *slog.Logger, req query.Request, err error) {
	if err != nil {
		WriteError(w, log, err)
		return
	}
	data, err := reader.Read(r.Context(), req)
	if err != nil {
		WriteError(w, log, err)
		return
	}
	WriteRaw(w, http.StatusOK, data)
}

// export serves GET .../runs/{run}/export?format=ndjson|csv&metrics=a,b:
// the whole history, streamed. In-process it streams from the read model;
// through the NATS read service it is fetched in pages of query.ExportPageBytes
// and each page is written as it arrives.
func (h *Reads) export(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpExport)
	q := r.URL.Query()
	if err == nil {
		req.Runs.Format = q.Get("format")
		req.Runs.Metrics = query.CommaList(q.Get("metrics"))
		err = intParam(q, "min_step", &req.Runs.From)
	}
	if err == nil {
		err = query.CheckExport(req.Runs)
	}
	if err != nil {
		WriteError(w, h.Log, err)
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
	if ex, ok := h.Reader.(query.Exporter); ok {
		err = ex.Export(r.Context(), req, w, start)
	} else {
		err = h.exportPaged(r.Context(), req, w, start)
	}
	if err != nil {
		if !started {
			WriteError(w, h.Log, err)
			return
		}
		h.Log.Warn("export stopped", "run", req.Run, "err", err)
	}
}

func (h *Reads) exportPaged(ctx context.Context, req query.Request, w io.Writer, start func()) error {
	req.Runs.Header, req.Runs.MaxBytes = true, query.ExportPageBytes
	for first := true; ; first = false {
		data, err := h.Reader.Read(ctx, req)
		if err != nil {
			return err
		}
		var page query.ExportPage
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
