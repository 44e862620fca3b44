package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/logbook/logbook/web"
)

// Serve runs an HTTP server on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// CleanPaths collapses repeated slashes in request paths before h routes
// them: W&B clients build URLs by appending "/graphql" to WANDB_BASE_URL, so
// a base URL with a trailing slash gives "//graphql", which http.ServeMux
// would answer with a redirect that turns a POST into a GET.
func CleanPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "//") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = collapseSlashes(r.URL.Path)
			if r.URL.RawPath != "" {
				r2.URL.RawPath = collapseSlashes(r.URL.RawPath)
			}
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

func collapseSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// Health answers liveness probes.
func Health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Web serves the browser workspace: the page at / and /w/... (the page
// routes the path itself), its assets at /ui/.... Every other path stays
// the API's and the W&B endpoints'.
func Web(mux *http.ServeMux) {
	page := func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", web.CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(web.Index)
	}
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /w/", page)
	mux.HandleFunc("GET /ui/{file...}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := web.Lookup(r.PathValue("file"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ContentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// Revalidated on every load (a 304 by ETag), so a new binary's
		// modules are never mixed with cached old ones.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.ETag)
		if r.Header.Get("If-None-Match") == a.ETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(a.Body)
	})
}

// Routes are a part of the HTTP API.
type Routes interface {
	Register(mux *http.ServeMux)
}

// Handler is the HTTP API of parts, with /healthz (and the web UI at /
// when web is set). An *Ops part also counts and times every request.
func Handler(web bool, parts ...Routes) http.Handler {
	mux := http.NewServeMux()
	Health(mux)
	if web {
		Web(mux)
	}
	var h http.Handler = mux
	for _, p := range parts {
		p.Register(mux)
		if o, ok := p.(*Ops); ok {
			h = o.wrap(mux)
		}
	}
	return CleanPaths(h)
}
