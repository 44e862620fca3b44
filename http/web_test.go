package http_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/web"
)

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// The page is served at / and /w/..., the assets at /ui/...; every other
// path stays the API's.
func TestWebRoutes(t *testing.T) {
	mux := http.NewServeMux()
	lbhttp.Web(mux)
	mux.HandleFunc("GET /api/v1/whoami", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("api")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, p := range []string{"/", "/w/alice/proj", "/w/alice/proj/runs/r1?sort=name"} {
		resp, body := get(t, srv.URL+p)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s = %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Content-Security-Policy") != web.CSP {
			t.Errorf("GET %s: CSP %q", p, resp.Header.Get("Content-Security-Policy"))
		}
		if body != string(web.Index) {
			t.Errorf("GET %s is not the page", p)
		}
	}
	resp, body := get(t, srv.URL+"/ui/main.js")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(body, "import") {
		t.Fatalf("GET /ui/main.js = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, srv.URL+"/ui/main.js", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != 304 {
		t.Errorf("GET /ui/main.js with its ETag = %d, want 304", resp.StatusCode)
	}
	for path, want := range map[string]int{"/nope": 404, "/api/v1/whoami": 200, "/ui/nope.js": 404, "/ui/index.html": 404, "/ui/../web.go": 404} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
