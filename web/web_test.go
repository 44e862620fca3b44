package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Without the chart library (scripts/web-build not run), the page says how
// to build it instead of failing to load its modules; under CI the assets
// must be there.
func TestBuiltOrSaysHow(t *testing.T) {
	if !Built() {
		if os.Getenv("CI") != "" {
			t.Fatalf("web/dist lacks %v: scripts/test runs scripts/web-build first", missing)
		}
		if !strings.Contains(string(Index), "scripts/run") {
			t.Fatal("the fallback page does not say how to build the assets")
		}
		return
	}
	if _, ok := Lookup("vendor/uPlot.esm.js"); !ok {
		t.Fatal("uPlot is not embedded")
	}
	if !strings.Contains(string(Index), `src="/ui/main.js"`) {
		t.Fatal("the page does not load the app")
	}
	for _, name := range []string{"index.html", "../web.go", "nope.js"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) found an asset", name)
		}
	}
}

// Every module of the page parses (node --check), where node is installed.
func TestModulesParse(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed")
	}
	dir := t.TempDir()
	n := 0
	for name, a := range assets {
		if !strings.HasSuffix(name, ".js") || strings.HasPrefix(name, "vendor/") {
			continue
		}
		// .mjs: parsed as an ES module.
		p := filepath.Join(dir, strings.TrimSuffix(filepath.Base(name), ".js")+".mjs")
		if err := os.WriteFile(p, a.Body, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(node, "--check", p).CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", name, err, out)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("only %d modules embedded", n)
	}
}
