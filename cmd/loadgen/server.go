package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/ingest"
)

// server is the Logbook under load.
type server struct {
	url, natsURL string
	pid          int // process whose CPU and RSS are reported
	inProcess    bool
	dataDir      string // of the in-process Logbook (disk per point)
	http         *http.Client
	press        *pressure
	adminKey     string
	userKey      string // the load user's key
	entity       string
	project      string

	natsOpts []nats.Option
	jsOnce   sync.Once
	js       jetstream.JetStream
	jsErr    error
}

// withServer starts an all-in-one Logbook in this process (or uses -url),
// creates the load user and project, and calls fn.
func withServer(ctx context.Context, c config, stderr io.Writer, fn func(context.Context, *server) error) error {
	press := &pressure{base: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute, DisableCompression: true}}
	s := &server{http: &http.Client{Timeout: 2 * time.Minute, Transport: press}, press: press}
	if c.url != "" {
		s.url, s.natsURL, s.adminKey, s.pid = strings.TrimRight(c.url, "/"), c.natsURL, c.key, c.pid
		if s.pid == 0 {
			s.pid = os.Getpid()
		}
		if err := s.setup(ctx); err != nil {
			return err
		}
		return fn(ctx, s)
	}
	dir := c.dataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "logbook-loadgen-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	s.dataDir = dir
	s.adminKey, s.pid, s.inProcess = ingest.NewAPIKey(), os.Getpid(), true
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.AllInOne(ctx, app.AllInOneConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0",
			AdminKey: s.adminKey, KeyRate: 1e6, KeyBurst: 1e6, CompressEvents: c.s2, Log: c.logger(stderr)}, io.Discard, func(a app.Addrs) { ready <- a })
	}()
	select {
	case a := <-ready:
		s.url, s.natsURL = a.HTTP, a.NATS
		if a.NATSAuth != nil {
			s.natsOpts = append(s.natsOpts, nats.UserInfo(a.NATSAuth.User, a.NATSAuth.Password))
		}
	case err := <-done:
		return fmt.Errorf("start Logbook: %w", err)
	case <-time.After(time.Minute):
		return errors.New("the in-process Logbook did not start within a minute")
	}
	err := s.setup(ctx)
	if err == nil {
		err = fn(ctx, s)
	}
	cancel()
	if serr := <-done; serr != nil && err == nil && !errors.Is(serr, context.Canceled) {
		err = serr
	}
	return err
}

// setup creates a user with a key and a project of theirs, as the admin.
func (s *server) setup(ctx context.Context) error {
	user := "loadgen" + strconv.FormatInt(time.Now().Unix()%1_000_000, 10)
	if err := s.do(ctx, s.adminKey, "POST", "/api/v1/users", map[string]string{"username": user}, nil); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := s.do(ctx, s.adminKey, "POST", "/api/v1/users/"+user+"/keys", map[string]string{"name": "loadgen"}, &k); err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	s.userKey, s.entity, s.project = k.Key, user, "bench"
	if err := s.do(ctx, s.userKey, "POST", "/api/v1/projects", map[string]string{"entity": user, "name": s.project}, nil); err != nil {
		return fmt.Errorf("create project: %w", err)
	}
	return nil
}

func (s *server) projectPath() string { return "/api/v1/projects/" + s.entity + "/" + s.project }

// httpError is a non-2xx answer.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// do sends a JSON request (body may be []byte, sent as is) and decodes the
// answer into out.
func (s *server) do(ctx context.Context, key, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return &httpError{status: resp.StatusCode, body: strings.TrimSpace(string(data))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// runDoc is what the load generator reads of a run.
type runDoc struct {
	LastStep int64 `json:"last_step"`
	Rows     int64 `json:"history_rows"`
	Metrics  map[string]struct {
		Count int64 `json:"count"`
	} `json:"metrics"`
}

func (s *server) run(ctx context.Context, id string) (runDoc, error) {
	var d runDoc
	err := s.do(ctx, s.userKey, "GET", s.projectPath()+"/runs/"+id, nil, &d)
	return d, err
}

// startRun starts a run and returns its id.
func (s *server) startRun(ctx context.Context, name string) (string, error) {
	var out struct {
		Run string `json:"run_id"`
	}
	err := s.do(ctx, s.userKey, "POST", s.projectPath()+"/runs", map[string]string{"name": name, "job_type": "loadgen"}, &out)
	return out.Run, err
}
