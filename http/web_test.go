package http_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/web"
)

// The page is served at / only; every other path stays the API's.
func TestServesThePageAtRootOnly(t *testing.T) {
	mux := http.NewServeMux()
	lbhttp.Web(mux)
	mux.HandleFunc("GET /api/v1/whoami", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("api")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"<title>Logbook</title>", "/api/v1/projects", "/sampled?metric=", "Authorization"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page does not contain %q", want)
		}
	}
	for path, want := range map[string]int{"/nope": 404, "/api/v1/whoami": 200} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// The page's script parses (node --check), where node is installed.
func TestScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed")
	}
	s := string(web.Index)
	i, j := strings.Index(s, "<script>"), strings.Index(s, "</script>")
	if i < 0 || j < i {
		t.Fatal("no script in the page")
	}
	path := filepath.Join(t.TempDir(), "ui.js")
	if err := os.WriteFile(path, []byte(s[i+len("<script>"):j]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", path).CombinedOutput(); err != nil {
		t.Fatalf("the page's script does not parse: %v\n%s", err, out)
	}
}
