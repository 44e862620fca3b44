package http

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// Admin serves the read-model admin endpoints over HTTP (the all-in-one),
// for site admins:
//
//	GET  /api/v1/admin/readmodel[?verify=1]  the digest (and a verification by replay)
//	POST /api/v1/admin/readmodel/rebuild     rebuild and switch; streams RebuildProgress as JSON lines
type Admin struct {
	ReadModel *query.ReadModel
	Log       *slog.Logger
}

// Register adds the admin routes to mux.
func (a *Admin) Register(mux *http.ServeMux) {
	p := a.ReadModel
	mux.HandleFunc("GET /api/v1/admin/readmodel", a.siteAdmin(func(w http.ResponseWriter, r *http.Request) {
		st := p.Status()
		if r.URL.Query().Get("verify") != "" {
			v, err := p.Verify(r.Context())
			if err != nil {
				WriteError(w, a.Log, err)
				return
			}
			st.Verify, st.Digest = &v, &v.Live
		} else {
			d, err := p.Digest()
			if err != nil {
				WriteError(w, a.Log, err)
				return
			}
			st.Digest = &d
		}
		WriteJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("POST /api/v1/admin/readmodel/rebuild", a.siteAdmin(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		send := func(pr query.RebuildProgress) {
			_ = enc.Encode(pr)
			if flusher != nil {
				flusher.Flush()
			}
		}
		var last query.RebuildProgress
		_, err := p.Rebuild(r.Context(), func(pr query.RebuildProgress) {
			// Throttle to what a progress bar needs.
			if pr.Done || pr.Applied-last.Applied >= 5000 || last.Applied == 0 {
				last = pr
				send(pr)
			}
		})
		if err != nil {
			send(query.RebuildProgress{ID: p.ID, Done: true, Error: err.Error()})
		}
	}))
}

// siteAdmin lets only site admins (by the live read model) through.
func (a *Admin) siteAdmin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := APIKey(r)
		if !ok {
			WriteError(w, a.Log, errs.E(errs.Unauthenticated, "send your API key as 'Authorization: Bearer <key>'"))
			return
		}
		u, err := a.ReadModel.User(policy.HashKey(key))
		if err != nil {
			WriteError(w, a.Log, errs.E(errs.Unauthenticated, "invalid or revoked API key"))
			return
		}
		if !u.SiteAdmin {
			WriteError(w, a.Log, errs.E(errs.Forbidden, "only a site admin may inspect or rebuild the read model"))
			return
		}
		h(w, r)
	}
}
