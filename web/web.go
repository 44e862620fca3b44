// Package web holds Logbook's browser UI: one page that reads the HTTP API
// with the user's API key (kept in the browser's local storage) and shows
// projects, their runs side by side and each run's config, summary and
// metric charts (downsampled series with min/max bands, as W&B draws them).
// Package http serves it.
package web

import _ "embed"

// Index is the page.
//
//go:embed index.html
var Index []byte
