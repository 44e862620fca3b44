package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// Admin subjects of the projectors' read models. Every projector answers
// (no queue group): each replica holds its own read model.
//
//	<prefix>.admin.readmodel.status            -> ReadModelStatus with Seq (cheap)
//	<prefix>.admin.readmodel.digest            -> ReadModelStatus with Digest
//	<prefix>.admin.readmodel.verify            -> ReadModelStatus with Verification
//	<prefix>.admin.readmodel.rebuild           -> ReadModelStatus; then progress on
//	<prefix>.admin.readmodel.progress.<id>     <- RebuildProgress messages, the last with Done
//
// A request may name one projector: {"id": "..."}.
func AdminSubject(prefix, op string) string { return prefix + ".admin.readmodel." + op }

// ProgressSubject is where projector id reports rebuild progress.
func ProgressSubject(prefix, id string) string { return AdminSubject(prefix, "progress."+id) }

// ReadModelStatus is a projector's answer to an admin request.
type ReadModelStatus struct {
	ID     string                  `json:"id"`
	Dir    string                  `json:"dir"`
	Seq    uint64                  `json:"seq"`
	Digest *projections.DigestInfo `json:"digest,omitempty"`
	Verify *Verification           `json:"verify,omitempty"`
	Error  string                  `json:"error,omitempty"`
}

// AdminRequest is the body of an admin request.
type AdminRequest struct {
	ID string `json:"id,omitempty"` // only this projector answers; "" for all
}

func (p *Projector) status() ReadModelStatus {
	g := p.cur.Load()
	return ReadModelStatus{ID: p.ID, Dir: g.dir, Seq: g.store.Seq()}
}

// serveAdmin answers digest, verify and rebuild requests over NATS.
func (p *Projector) serveAdmin(ctx context.Context) (stop func(), err error) {
	var wg sync.WaitGroup
	var subs []*nats.Subscription
	handle := func(op string, fn func(m *nats.Msg) any) error {
		sub, err := p.bus.NC.Subscribe(AdminSubject(p.bus.Subject.Prefix, op), func(m *nats.Msg) {
			var req AdminRequest
			_ = json.Unmarshal(m.Data, &req)
			if req.ID != "" && req.ID != p.ID {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, _ := json.Marshal(fn(m))
				_ = m.Respond(b)
			}()
		})
		subs = append(subs, sub)
		return err
	}
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		wg.Wait()
	}
	errs := []error{
		handle("status", func(*nats.Msg) any { return p.status() }),
		handle("digest", func(*nats.Msg) any {
			st := p.status()
			d, err := p.Digest()
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Digest = &d
			}
			return st
		}),
		handle("verify", func(*nats.Msg) any {
			st := p.status()
			v, err := p.Verify(ctx)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Verify = &v
			}
			return st
		}),
		handle("rebuild", func(*nats.Msg) any {
			st := p.status()
			subj := ProgressSubject(p.bus.Subject.Prefix, p.ID)
			wg.Add(1)
			go func() {
				defer wg.Done()
				pub := func(pr RebuildProgress) {
					b, _ := json.Marshal(pr)
					_ = p.bus.NC.Publish(subj, b)
				}
				if _, err := p.Rebuild(ctx, pub); err != nil {
					p.log.Error("rebuild", "err", err)
					pub(RebuildProgress{ID: p.ID, Done: true, Error: err.Error()})
				}
			}()
			return st
		}),
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// AdminRoutes serves the read-model admin endpoints over HTTP (the
// all-in-one), for site admins:
//
//	GET  /api/v1/admin/readmodel[?verify=1]  the digest (and a verification by replay)
//	POST /api/v1/admin/readmodel/rebuild     rebuild and switch; streams RebuildProgress as JSON lines
func (p *Projector) AdminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/readmodel", p.siteAdmin(func(w http.ResponseWriter, r *http.Request) {
		st := p.status()
		if r.URL.Query().Get("verify") != "" {
			v, err := p.Verify(r.Context())
			if err != nil {
				httpx.WriteError(w, p.log, err)
				return
			}
			st.Verify, st.Digest = &v, &v.Live
		} else {
			d, err := p.Digest()
			if err != nil {
				httpx.WriteError(w, p.log, err)
				return
			}
			st.Digest = &d
		}
		httpx.WriteJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("POST /api/v1/admin/readmodel/rebuild", p.siteAdmin(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		send := func(pr RebuildProgress) {
			_ = enc.Encode(pr)
			if flusher != nil {
				flusher.Flush()
			}
		}
		var last RebuildProgress
		_, err := p.Rebuild(r.Context(), func(pr RebuildProgress) {
			// Throttle to what a progress bar needs.
			if pr.Done || pr.Applied-last.Applied >= 5000 || last.Applied == 0 {
				last = pr
				send(pr)
			}
		})
		if err != nil {
			send(RebuildProgress{ID: p.ID, Done: true, Error: err.Error()})
		}
	}))
}

// siteAdmin lets only site admins (by the live read model) through.
func (p *Projector) siteAdmin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := httpx.APIKey(r)
		if !ok {
			httpx.WriteError(w, p.log, httpx.Errorf(401, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'"))
			return
		}
		var u projections.User
		var err error
		p.view(func(g *generation) { u, err = g.store.UserByKeyHash(policy.HashKey(key)) })
		if err != nil {
			httpx.WriteError(w, p.log, httpx.Errorf(401, "unauthenticated", "invalid or revoked API key"))
			return
		}
		if !u.SiteAdmin {
			httpx.WriteError(w, p.log, httpx.Errorf(403, "forbidden", "only a site admin may inspect or rebuild the read model"))
			return
		}
		h(w, r)
	}
}
