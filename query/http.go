package query

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// Handler serves the HTTP read API under /api/v1.
type Handler struct {
	Reader Reader
	Log    *slog.Logger
}

// Register adds the read routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/whoami", h.serve(OpWhoAmI))
	mux.HandleFunc("GET /api/v1/projects", h.serve(OpProjects))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}", h.serve(OpProject))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/members", h.serve(OpMembers))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs", h.searchRuns)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/run-groups", h.runGroups)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/sampled", h.sampled)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/export", h.export)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}", h.serve(OpRun))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/history", h.serve(OpHistory))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/lines", h.serve(OpLines))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/asof", h.serve(OpAsOf))
}

func (h *Handler) serve(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := httpx.APIKey(r)
		if !ok {
			httpx.WriteError(w, h.Log, httpx.Errorf(401, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'"))
			return
		}
		q := r.URL.Query()
		req := Request{
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
					err = httpx.Errorf(400, "invalid", "query parameter %s must be an integer, not %q", name, v)
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
				err = httpx.Errorf(400, "invalid", "header X-Logbook-Min-Seq must be an integer, not %q", v)
			}
		}
		if err != nil {
			httpx.WriteError(w, h.Log, err)
			return
		}
		if limit < 0 || minSeq < 0 {
			httpx.WriteError(w, h.Log, httpx.Errorf(400, "invalid", "limit and min_seq must not be negative"))
			return
		}
		req.Limit, req.MinSeq = int(limit), uint64(minSeq)
		if op == OpAsOf {
			if err := parseAsOf(q, &req); err != nil {
				httpx.WriteError(w, h.Log, err)
				return
			}
		}
		data, err := h.Reader.Read(r.Context(), req)
		if err != nil {
			httpx.WriteError(w, h.Log, err)
			return
		}
		httpx.WriteRaw(w, http.StatusOK, data)
	}
}
