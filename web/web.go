// Package web serves Logbook's browser UI: one page that reads the HTTP API
// with the user's API key (kept in the browser's local storage) and shows
// projects, their runs side by side and each run's config, summary and
// metric charts (downsampled series with min/max bands, as W&B draws them).
package web

import (
	_ "embed"
	"net/http"
)

//go:embed index.html
var index []byte

// Register serves the UI at / (only the exact path: the API and the W&B
// endpoints keep theirs).
func Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(index)
	})
}
