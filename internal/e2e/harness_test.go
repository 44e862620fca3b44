package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
)

const adminKey = "lb-test0000000000000000000000000000000000000000admin"

// system is a running Logbook: where to write, where to read, and the site
// admin's key.
type system struct {
	WriteURL, ReadURL string
	NATSURL           string
	DataDir           string
	// processes are the separate processes whose output is captured (for
	// the test that no key reaches a log).
	processes []*proc
	// logs is the all-in-one's captured log.
	logs *syncBuffer
	// natsAuth is the all-in-one's internal NATS credentials; stop stops
	// it (also done at cleanup).
	natsAuth *bus.EmbeddedAuth
	stop     func()
	// alive reports which of the system's processes (or the all-in-one)
	// have exited.
	alive func() error
	// projector is the projector process of mustProcesses.
	projector *proc
}

// mustAllInOne starts the all-in-one Logbook in this process on random
// ports with its data in a temp dir.
func mustAllInOne(t *testing.T) system {
	t.Helper()
	return mustAllInOneWith(t, nil)
}

// mustAllInOneWith is mustAllInOne with the configuration changed by
// configure (if not nil). Its debug log is captured in system.logs.
func mustAllInOneWith(t *testing.T, configure func(*app.AllInOneConfig)) system {
	t.Helper()
	logs := &syncBuffer{}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	cfg := app.AllInOneConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
		AdminKey: adminKey,
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if configure != nil {
		configure(&cfg)
	}
	exited := make(chan struct{})
	go func() {
		err := app.AllInOne(ctx, cfg, logs, func(a app.Addrs) { ready <- a })
		close(exited)
		done <- err
	}()
	var a app.Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("logbook did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("logbook did not start within 60s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("logbook stopped with: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	alive := func() error {
		select {
		case <-exited:
			return errors.New("the all-in-one Logbook exited")
		default:
			return nil
		}
	}
	return system{WriteURL: a.HTTP, ReadURL: a.HTTP, NATSURL: a.NATS, DataDir: dir, logs: logs, natsAuth: a.NATSAuth, stop: stop, alive: alive}
}

// api is a caller with an API key.
type api struct {
	t    *testing.T
	base string
	key  string
}

// do sends a JSON request and decodes the JSON answer into out (if not nil),
// returning the status.
func (a api) do(method, path string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %d, undecodable answer %q: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// must sends a request that must succeed with status want.
func (a api) must(want int, method, path string, body any, out any) {
	a.t.Helper()
	var raw json.RawMessage
	if got := a.do(method, path, body, &raw); got != want {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// apiError is the error body of every API.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// newUser creates a user (as admin) and returns an API key for them.
func newUser(t *testing.T, admin api, name, email string) string {
	t.Helper()
	admin.must(201, "POST", "/api/v1/users", map[string]string{"username": name, "email": email}, nil)
	var k struct {
		Key string `json:"key"`
	}
	admin.must(201, "POST", "/api/v1/users/"+name+"/keys", map[string]string{"name": "test"}, &k)
	if len(k.Key) < 43 {
		t.Fatalf("key %q too short for W&B clients", k.Key)
	}
	return k.Key
}

func ci() bool { return os.Getenv("CI") != "" }

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
