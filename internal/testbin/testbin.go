// Package testbin builds and runs the real binaries for tests that drive
// Logbook as separate processes: nats-server (from its Go module) and
// Logbook's commands.
package testbin

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Packages are what Build builds; the binary of each is named after its
// last path element (nats-server for the server's module).
var Packages = []string{"github.com/nats-io/nats-server/v2", "./cmd/ingest", "./cmd/projector", "./cmd/query", "./cmd/logbook"}

// Build builds Packages once per test binary, without the race detector
// (the processes are under test, not instrumented), and returns the
// directory holding them.
func Build() (string, error) {
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(string(bytes.TrimSpace(out)))
		if binDir, buildErr = os.MkdirTemp("", "logbook-bin-"); buildErr != nil {
			return
		}
		for _, pkg := range Packages {
			name := filepath.Base(pkg)
			if name == "v2" {
				name = "nats-server"
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	return binDir, buildErr
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Buffer collects a process's output; safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	oneMu   sync.Mutex
	oneBins = map[string]string{}
)

// Binary builds one of Logbook's commands (./cmd/logbook) once per test
// binary, without the race detector, and returns its path: cheaper than
// Build when a test needs only that one.
func Binary(pkg string) (string, error) {
	oneMu.Lock()
	defer oneMu.Unlock()
	if p, ok := oneBins[pkg]; ok {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	dir, err := os.MkdirTemp("", "logbook-bin-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(string(bytes.TrimSpace(out)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	oneBins[pkg] = path
	return path, nil
}
