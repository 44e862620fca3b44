// Package web holds Logbook's browser workspace as embedded assets: plain
// ES modules of our own (app/) and the chart library (uPlot, copied from npm
// into dist/ by scripts/web-build). The page reads only the HTTP API, with
// the user's API key kept in the browser's local storage. Package http
// serves it: the page at / and /w/... (the client routes the path and keeps
// the whole view in the URL), the assets at /ui/....
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"
)

//go:embed app
var appFS embed.FS

//go:embed dist
var distFS embed.FS

// vendorFiles are the third-party files scripts/web-build puts in dist/.
var vendorFiles = []string{"uPlot.esm.js", "uPlot.min.css"}

// An Asset is one embedded file, with its content type and a strong ETag.
type Asset struct {
	Body        []byte
	ContentType string
	ETag        string
}

var (
	assets  = map[string]Asset{} // path under /ui/ -> asset
	missing []string             // vendor files not built into this binary
	// Index is the page: the workspace, or, in a binary built without the
	// chart library, a page that says how to build it.
	Index []byte
)

// CSP allows our own scripts and styles only; uPlot and the page set
// element styles through the CSSOM, which style-src does not govern.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

func init() {
	add := func(fsys fs.FS, dir, prefix string) {
		_ = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			assets[prefix+strings.TrimPrefix(p, dir+"/")] = Asset{Body: b, ContentType: contentType(p), ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
			return nil
		})
	}
	add(appFS, "app", "")
	add(distFS, "dist", "vendor/")
	for _, f := range vendorFiles {
		if _, ok := assets["vendor/"+f]; !ok {
			missing = append(missing, f)
		}
	}
	Index = assets["index.html"].Body
	if len(missing) > 0 {
		Index = []byte(notBuilt)
	}
}

// Lookup answers the asset at a path under /ui/ (the page itself is not
// one: it is served as Index).
func Lookup(name string) (Asset, bool) {
	name = path.Clean(name)
	if name == "index.html" || strings.HasPrefix(name, "../") {
		return Asset{}, false
	}
	a, ok := assets[name]
	return a, ok
}

// Built reports whether the chart library was built into this binary.
func Built() bool { return len(missing) == 0 }

const notBuilt = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Logbook</title></head>
<body style="font:15px/1.5 system-ui,sans-serif;max-width:640px;margin:60px auto;padding:0 20px">
<h1>Logbook</h1>
<p>The API is running, but this binary was built without the web UI's assets
(the chart library, installed from npm).</p>
<p>Build them and start Logbook again: <code>./scripts/run</code> (which runs
<code>./scripts/web-build</code>, then <code>go run ./cmd/logbook</code>).</p>
</body></html>`

func contentType(p string) string {
	switch path.Ext(p) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
