// Package fault holds Logbook's fault tests: real nats-server, ingest and
// projector processes (built without -race, so that the suite stays fast
// under go test -race), killed with SIGKILL at random points while load runs.
// Every test is bounded in time; -long (or LOGBOOK_LONG_FAULTS=1) runs the
// long versions (20 kills, 1,000,000 events).
package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/testbin"
)

var long = flag.Bool("long", os.Getenv("LOGBOOK_LONG_FAULTS") == "1", "run the long fault tests (20 kills, 1,000,000 events)")

const adminKey = "lb-fault000000000000000000000000000000000000000admin"

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

// proc is a process that can be killed and started again.
type proc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	env  []string
	out  *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, args: args, env: env, out: &syncBuffer{}}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s (tail):\n%s", name, tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	testbin.DieWithTest(cmd)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		p.t.Errorf("start %s: %v", p.name, err)
		return
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// exited reports whether the process ended on its own.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// sys is nats-server plus ingest and projector processes.
type sys struct {
	t         *testing.T
	bin, dir  string
	natsURL   string
	ingestURL string
	env       []string
	nc        *nats.Conn
	js        jetstream.JetStream
}

func mustNATS(t *testing.T) *sys {
	t.Helper()
	bin := mustBinaries(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "nats.conf")
	err := os.WriteFile(conf, []byte("max_payload: 8MB\njetstream { store_dir: "+strconv.Quote(filepath.Join(dir, "nats"))+" }\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	startProc(t, "nats-server", nil, filepath.Join(bin, "nats-server"), "-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var nc *nats.Conn
	for i := 0; ; i++ {
		if nc, err = nats.Connect(url); err == nil {
			break
		}
		if i > 300 {
			t.Fatalf("nats-server not reachable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	s := &sys{t: t, bin: bin, dir: dir, natsURL: url, nc: nc, js: js,
		env: []string{"LOGBOOK_ADMIN_API_KEY=" + adminKey, "LOGBOOK_NATS_URL=" + url, "LOGBOOK_LOG_LEVEL=warn"}}
	return s
}

func (s *sys) ingest(name string) *proc {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	// No crash sweeps: runs go quiet while a test checks the read model,
	// and run_crashed events would move the log on meanwhile.
	p := startProc(s.t, name, s.env, filepath.Join(s.bin, "ingest"), "-http.addr", addr, "-runs.crash-after", "87600h")
	if s.ingestURL == "" {
		s.ingestURL = "http://" + addr
		s.waitIngest()
	}
	return p
}

func (s *sys) projector(name string) *proc {
	return startProc(s.t, name, s.env, filepath.Join(s.bin, "projector"), "-data.dir", filepath.Join(s.dir, name))
}

// waitIngest waits until the edge authenticates the admin.
func (s *sys) waitIngest() {
	s.t.Helper()
	for i := 0; ; i++ {
		st, _ := s.call(adminKey, "POST", "/api/v1/users", map[string]string{})
		if st == 400 {
			return
		}
		if i > 600 {
			s.t.Fatalf("ingest not ready: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *sys) call(key, method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, s.ingestURL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func (s *sys) must(key, method, path string, body any) map[string]any {
	s.t.Helper()
	st, out := s.call(key, method, path, body)
	if st/100 != 2 {
		s.t.Fatalf("%s %s: %d %v", method, path, st, out)
	}
	return out
}

// user creates a user with a key and returns the key.
func (s *sys) user(name string) string {
	s.must(adminKey, "POST", "/api/v1/users", map[string]string{"username": name, "email": name + "@example.com"})
	out := s.must(adminKey, "POST", "/api/v1/users/"+name+"/keys", map[string]string{"name": "fault"})
	return out["key"].(string)
}

var subj = events.Subjects{Prefix: events.DefaultPrefix}

// propose publishes proposals straight to the inbox stream, as the ingest
// edge does, without waiting for decisions.
func (s *sys) propose(ctx context.Context, ps []events.Event) {
	s.t.Helper()
	for i, p := range ps {
		data, err := events.Encode(p)
		if err != nil {
			s.t.Fatal(err)
		}
		msg := &nats.Msg{Subject: subj.Proposal(p.Actor, p), Data: data}
		for {
			_, err = s.js.PublishMsgAsync(msg, jetstream.WithMsgID(p.ID))
			if err == nil {
				break
			}
			select {
			case <-s.js.PublishAsyncComplete():
			case <-time.After(time.Second):
			}
		}
		if i%10000 == 0 && ctx.Err() != nil {
			return
		}
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		s.t.Fatal("proposals not acknowledged within 60s")
	}
}

func (s *sys) streamInfo(name string) *jetstream.StreamInfo {
	s.t.Helper()
	st, err := s.js.Stream(context.Background(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info
}

// events reads the whole events stream.
func (s *sys) events() []events.Event {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out []events.Event
	err := bus.Read(ctx, s.js, bus.ReadOptions{Stream: bus.EventsStream, Batch: 5000}, func(b []bus.Entry) error {
		for _, en := range b {
			e, err := events.Decode(en.Data)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// runCLI runs a Logbook command and returns its standard output.
func (s *sys) runCLI(bin string, args ...string) []byte {
	s.t.Helper()
	out, err := s.tryCLI(bin, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// tryCLI runs a Logbook command and returns its standard output or why it
// failed.
func (s *sys) tryCLI(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, bin), args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %v: %v\n%s\n%s", bin, args, err, out, stderr.String())
	}
	return out, nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not reached within %s: %s", what, within, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
