package http

import (
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// RunFiles serves the files a run's W&B clients uploaded (CreateRunFiles):
// a listing and each file's bytes, to whoever may read the run.
type RunFiles struct {
	Files *query.RunFiles
	Log   *slog.Logger
}

// Register adds the routes to mux.
func (h *RunFiles) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/files", h.list)
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/runs/{run}/files/{file...}", h.get)
}

func (h *RunFiles) key(w http.ResponseWriter, r *http.Request) (string, bool) {
	key, ok := APIKey(r)
	if !ok {
		WriteError(w, h.Log, errs.New(errs.Unauthenticated, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'"))
	}
	return policy.HashKey(key), ok
}

func (h *RunFiles) list(w http.ResponseWriter, r *http.Request) {
	kh, ok := h.key(w, r)
	if !ok {
		return
	}
	files, err := h.Files.List(r.Context(), kh, r.PathValue("entity"), r.PathValue("project"), r.PathValue("run"))
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"files": files})
}

func (h *RunFiles) get(w http.ResponseWriter, r *http.Request) {
	kh, ok := h.key(w, r)
	if !ok {
		return
	}
	rc, fi, err := h.Files.Open(r.Context(), kh, r.PathValue("entity"), r.PathValue("project"), r.PathValue("run"), r.PathValue("file"))
	if err != nil {
		WriteError(w, h.Log, err)
		return
	}
	defer rc.Close()
	ServeBlob(w, fi.Name, fi.Size, fi.MD5, rc)
}

// ServeBlob writes a stored file's bytes: its type from the name's
// extension, its length, and its MD5 (base64) when known.
func ServeBlob(w http.ResponseWriter, name string, size int64, md5 string, body io.Reader) {
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", "attachment")
	if md5 != "" {
		w.Header().Set("Content-MD5", md5)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, body)
}
