package http

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// Artifacts serves the native artifact read API: a project's collections,
// a collection's versions, one version with its manifest and lineage, a
// version's file, and a run's inputs and outputs. Metadata comes from the
// read model (query.Reader); manifests and bytes from the artifact object
// store.
type Artifacts struct {
	Artifacts *query.Artifacts
	Log       *slog.Logger
}

// Register adds the routes to mux.
func (h *Artifacts) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/artifacts", h.read(query.OpArtifactCollections))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/artifacts/{collection}", h.read(query.OpArtifactVersions))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/artifacts/{collection}/{version}", h.version)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/artifacts/{collection}/{version}/files/{path...}", h.file)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/artifacts", h.read(query.OpRunArtifacts))
}

// request reads the key, the path and min_seq (or X-Logbook-Min-Seq).
func (h *Artifacts) request(r *http.Request, op string) (query.Request, error) {
	key, ok := APIKey(r)
	if !ok {
		return query.Request{}, errs.New(errs.Unauthenticated, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'")
	}
	req := query.Request{KeyHash: policy.HashKey(key), Op: op, Entity: r.PathValue("entity"), Project: r.PathValue("project"),
		Run: r.PathValue("run"), Collection: r.PathValue("collection"), Version: r.PathValue("version")}
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

func (h *Artifacts) read(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := h.request(r, op)
		if err != nil {
			WriteError(w, h.Log, err)
			return
		}
		data, err := h.Artifacts.Reader.Read(r.Context(), req)
		if err != nil {
			WriteError(w, h.Log, err)
			return
		}
		WriteRaw(w, http.StatusOK, data)
	}
}

// version serves one version (vN, an alias or its id) with its manifest.
func (h *Artifacts) version(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpArtifact)
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	v, err := h.Artifacts.Version(r.Context(), req.KeyHash, req.Entity, req.Project, req.Collection, req.Version, req.MinSeq)
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// file serves the bytes of one file of a version.
func (h *Artifacts) file(w http.ResponseWriter, r *http.Request) {
	req, err := h.request(r, query.OpArtifact)
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	rc, fi, err := h.Artifacts.Open(r.Context(), req.KeyHash, req.Entity, req.Project, req.Collection, req.Version, r.PathValue("path"))
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	defer rc.Close()
	ServeBlob(w, fi.Name, fi.Size, fi.MD5, rc)
}
