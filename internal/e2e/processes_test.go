package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/internal/testbin"
)

// syncBuffer collects a process's output.
type syncBuffer = testbin.Buffer

// mustBinaries builds nats-server and Logbook's commands once per test
// binary (internal/testbin).
func mustBinaries(t *testing.T) string {
	t.Helper()
	dir, err := testbin.Build()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testbin.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// proc is a started process whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// start runs a binary until the test ends (SIGTERM, then SIGKILL).
func start(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	testbin.DieWithTest(cmd)
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.out)
		}
	})
	return p
}

// waitHTTP waits until url answers 200 or the process dies.
func waitHTTP(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s", p.name, p.out)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s within 60s: %s", p.name, url, p.out)
}

// mustProcesses starts nats-server (deploy/nats.conf) on a random loopback
// port and ingest, projector and query as separate processes.
func mustProcesses(t *testing.T, ingestArgs ...string) system {
	t.Helper()
	bin := mustBinaries(t)
	dir := t.TempDir()
	natsPort := freePort(t)
	// deploy/nats.conf as shipped, with its store directory in the temp dir.
	conf, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte(`store_dir: "./nats-data"`), []byte("store_dir: "+strconv.Quote(filepath.Join(dir, "nats"))), 1)
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	authConf, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), authConf, 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := mustNATSSecrets(t)
	ns := start(t, "nats-server", secrets, filepath.Join(bin, "nats-server"),
		"-c", confPath, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort))
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", natsPort))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not listening: %s", ns.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ingestAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	queryAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := append([]string{"LOGBOOK_ADMIN_API_KEY=" + adminKey, "LOGBOOK_NATS_URL=" + natsURL}, secrets...)
	in := start(t, "ingest", env, filepath.Join(bin, "ingest"), append([]string{"-http.addr", ingestAddr}, ingestArgs...)...)
	proj := start(t, "projector", env, filepath.Join(bin, "projector"), "-data.dir", filepath.Join(dir, "readmodel"))
	q := start(t, "query", env, filepath.Join(bin, "query"), "-http.addr", queryAddr)
	waitHTTP(t, in, "http://"+ingestAddr+"/healthz")
	waitHTTP(t, q, "http://"+queryAddr+"/healthz")
	// The edge answers once the policy state is loaded and the admin exists.
	admin := api{t, "http://" + ingestAddr, adminKey}
	for i := 0; ; i++ {
		var e apiError
		st := admin.do("POST", "/api/v1/users", []byte(`{}`), &e)
		if st == 400 {
			break // authenticated, and the empty body refused: ready
		}
		if i > 300 {
			t.Fatalf("ingest not ready: %d %+v", st, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Reads answer once a projector serves them (query answers 503 until then).
	reads := api{t, "http://" + queryAddr, adminKey}
	for i := 0; ; i++ {
		var e apiError
		st := reads.do("GET", "/api/v1/whoami", nil, &e)
		if st == 200 {
			break
		}
		if i > 300 {
			t.Fatalf("no projector answers reads: %d %+v", st, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var password string
	for _, kv := range secrets {
		if v, ok := strings.CutPrefix(kv, "LOGBOOK_NATS_PASSWORD="); ok {
			password = v
		}
	}
	all := []*proc{ns, in, proj, q}
	alive := func() error {
		var dead []string
		for _, p := range all {
			select {
			case <-p.done:
				dead = append(dead, fmt.Sprintf("%s (%v)", p.name, p.cmd.ProcessState))
			default:
			}
		}
		if len(dead) > 0 {
			return fmt.Errorf("exited: %s", strings.Join(dead, ", "))
		}
		return nil
	}
	return system{WriteURL: "http://" + ingestAddr, ReadURL: "http://" + queryAddr, NATSURL: natsURL, DataDir: dir,
		processes: []*proc{ns, in}, natsAuth: &bus.EmbeddedAuth{User: "logbook", Password: password}, alive: alive, projector: proj}
}

// TestSharedProjectScenarioProcesses runs the scenario through nats-server,
// ingest, projector and query as separate processes.
func TestSharedProjectScenarioProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts real binaries")
	}
	sys := mustProcesses(t)
	runScenario(t, sys)
}

// mustNATSSecrets makes the credentials deploy/auth.conf reads from the
// environment, as `logbook nats-secrets` prints them.
func mustNATSSecrets(t *testing.T) []string {
	t.Helper()
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"nats-secrets"}, &out); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		env = append(env, strings.TrimPrefix(line, "export "))
	}
	return env
}
