package http

import (
	"log/slog"
	"net/http"

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

func (h *Artifacts) read(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := readRequest(r, op)
		answer(w, r, h.Artifacts.Reader, h.Log, req, err)
	}
}

// version serves one version (vN, an alias or its id) with its manifest.
func (h *Artifacts) version(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(r, query.OpArtifact)
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
	req, err := readRequest(r, query.OpArtifact)
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
