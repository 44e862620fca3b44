// Package layout checks that the tree keeps its rooms: which package may
// import which (the layering written down in DESIGN.md), and that go.mod is
// tidy.
package layout

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/logbook/logbook"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", dir)
	}
	return dir
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// adapters are the packages that speak a technology.
var adapters = map[string]bool{"bus": true, "http": true, "wandb": true, "client": true, "app": true, "web": true, "metrics": true}

// violations lists every import against the layering: the domain imports
// no adapter and no transport library; nothing but the mains imports app;
// only http and wandb (and clients of the API: the Go client, the CLI, the
// load generator) speak net/http; the services know no transport.
func violations(pkgs []pkg) []string {
	domain := map[string]bool{"events": true, "policy": true, "projections": true, "errs": true}
	httpClients := map[string]bool{"http": true, "wandb": true, "client": true, "internal/cli": true, "cmd/loadgen": true}
	var out []string
	for _, p := range pkgs {
		name := rel(p.ImportPath)
		for _, imp := range p.Imports {
			ours := strings.HasPrefix(imp, module)
			switch {
			case domain[name] && ours && adapters[rel(imp)]:
				out = append(out, name+" (domain) imports the adapter "+rel(imp))
			case domain[name] && (strings.HasPrefix(imp, "github.com/nats-io/") || strings.HasPrefix(imp, "github.com/prometheus/") || imp == "net/http"):
				out = append(out, name+" (domain) imports "+imp)
			case ours && rel(imp) == "app" && !strings.HasPrefix(name, "cmd/"):
				out = append(out, name+" imports app: only the mains (and tests) may")
			case imp == "net/http" && !httpClients[name]:
				out = append(out, name+" imports net/http: HTTP belongs in package http (or wandb)")
			}
		}
		if name == "query" && slices.ContainsFunc(p.Imports, func(i string) bool { return strings.HasPrefix(i, "github.com/nats-io/") }) {
			out = append(out, name+" imports NATS: the read side gets its event log passed in (bus)")
		}
		if (name == "ingest" || name == "query") && contains(p.Deps, module+"/http") {
			out = append(out, name+" depends on package http: services know no transport")
		}
	}
	return out
}

func TestImportDirections(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// The check fails where it should: the real tree with one bad import added
// per rule is flagged once per addition.
func TestImportDirectionsCatchViolations(t *testing.T) {
	pkgs := listPackages(t)
	bad := map[string]string{"policy": module + "/bus", "query": "net/http", "wandb": module + "/app", "projections": "github.com/nats-io/nats.go",
		"events": module + "/metrics"}
	for i := range pkgs {
		if imp, ok := bad[rel(pkgs[i].ImportPath)]; ok {
			pkgs[i].Imports = append(pkgs[i].Imports, imp)
		}
	}
	if got := violations(pkgs); len(got) != len(bad) {
		t.Fatalf("violations = %q, want one for each of %v", got, bad)
	}
}

// maxFuncLines bounds a function in the packages where rules and protocol
// logic live, so that each reads on one screen.
const maxFuncLines = 85

// No function of policy, ingest, query or wandb is longer than maxFuncLines.
func TestShortFunctions(t *testing.T) {
	fset := token.NewFileSet()
	for _, dir := range []string{"policy", "ingest", "query", "wandb"} {
		files, err := filepath.Glob(filepath.Join(root(t), dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
					if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
						t.Errorf("%s: %s is %d lines (at most %d)", rel(f), fd.Name.Name, n, maxFuncLines)
					}
				}
			}
		}
	}
}

// go mod tidy leaves go.mod and go.sum as they are.
func TestModTidy(t *testing.T) {
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = root(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go mod tidy -diff: %v\n%s", err, out)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
