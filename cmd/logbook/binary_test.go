package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/logbook/logbook/internal/testbin"
)

// lb runs the real logbook binary: its stdout, stderr and exit status.
type lb struct {
	t   *testing.T
	bin string
	env []string
}

func (l lb) run(args ...string) (stdout, stderr string, code int) {
	l.t.Helper()
	cmd := exec.Command(l.bin, args...)
	cmd.Env = append(os.Environ(), l.env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("logbook %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (l lb) ok(args ...string) string {
	l.t.Helper()
	o, e, code := l.run(args...)
	if code != 0 {
		l.t.Fatalf("logbook %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
	}
	return o
}

func (l lb) with(env ...string) lb {
	return lb{l.t, l.bin, append(append([]string{}, l.env...), env...)}
}

func binary(t *testing.T) lb {
	t.Helper()
	bin, err := testbin.Binary("./cmd/logbook")
	if err != nil {
		t.Fatal(err)
	}
	return lb{t: t, bin: bin, env: []string{"LOGBOOK_ADMIN_API_KEY=", "LOGBOOK_URL=", "LOGBOOK_API_KEY="}}
}

// TestHelp: every command explains itself; unknown ones are refused.
func TestHelp(t *testing.T) {
	l := binary(t)
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		o, _, code := l.run(args...)
		if code != 0 {
			t.Errorf("logbook %v: exit %d", args, code)
		}
		for _, c := range []string{"serve", "digest", "rebuild", "admin reset-key", "runs", "history", "export", "members", "invite", "role", "remove", "user create", "key create", "audit"} {
			if !strings.Contains(o, "\n  "+c+" ") {
				t.Errorf("logbook %v does not list %q:\n%s", args, c, o)
			}
		}
	}
	o, _, code := l.run("serve", "-h")
	for _, f := range []string{"-data.dir", "-http.addr", "-nats.addr", "-durable", "-log.level", "-runs.crash-after", "LOGBOOK_DATA_DIR"} {
		if !strings.Contains(o, f) || code != 0 {
			t.Errorf("serve -h (exit %d) lacks %s:\n%s", code, f, o)
		}
	}
	// Only its own flags, and its arguments.
	o, _, code = l.run("user", "create", "-h")
	if code != 0 || !strings.Contains(o, "usage: logbook user create <username>") || !strings.Contains(o, "-email") || strings.Contains(o, "-before") || strings.Contains(o, "-limit") {
		t.Errorf("user create -h (exit %d):\n%s", code, o)
	}
	o, _, _ = l.run("help", "rebuild")
	if !strings.Contains(o, "usage: logbook rebuild") || strings.Contains(o, "digest:") {
		t.Errorf("help rebuild:\n%s", o)
	}
	o, _, _ = l.run("runs", "-h")
	for _, f := range []string{"<entity>/<project>", "-state", "-sort", "-limit", "-cursor", "-filter", "-o", "-q"} {
		if !strings.Contains(o, f) {
			t.Errorf("runs -h lacks %s:\n%s", f, o)
		}
	}
	for _, args := range [][]string{{"frobnicate"}, {"frobnicate", "-h"}, {"user"}, {"user", "frob"}, {"help", "frobnicate"}, {"user", "create"}, {"runs", "e/p", "-nosuchflag"}} {
		_, e, code := l.run(args...)
		if code != 2 || !strings.Contains(e, "logbook help") && !strings.Contains(e, "usage:") {
			t.Errorf("logbook %v: exit %d, stderr %q; want 2 and a hint", args, code, e)
		}
	}
}

// server is a running `logbook serve` process.
type server struct {
	cmd  *exec.Cmd
	out  *testbin.Buffer
	url  string
	key  string
	dir  string
	nats string
}

func startServer(t *testing.T, l lb, dir string, extra ...string) *server {
	t.Helper()
	s := &server{out: &testbin.Buffer{}, dir: dir}
	args := append([]string{"serve", "-data.dir", dir, "-http.addr", "127.0.0.1:0", "-nats.addr", "127.0.0.1:0", "-log.level", "warn"}, extra...)
	s.cmd = exec.Command(l.bin, args...)
	s.cmd.Env = append(os.Environ(), l.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	urlRe := regexp.MustCompile(`Web/API: (http://\S+)`)
	natsRe := regexp.MustCompile(`NATS: +(nats://\S+)`)
	keyRe := regexp.MustCompile(`\n  (lb-[0-9a-f]{48})\n`)
	deadline := time.Now().Add(90 * time.Second)
	for !urlRe.MatchString(s.out.String()) {
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			t.Fatalf("no URL printed:\n%s", s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	s.url = urlRe.FindStringSubmatch(s.out.String())[1]
	s.nats = natsRe.FindStringSubmatch(s.out.String())[1]
	if m := keyRe.FindStringSubmatch(s.out.String()); m != nil {
		s.key = m[1]
	}
	return s
}

func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		t.Errorf("logbook did not stop on SIGTERM:\n%s", s.out.String())
	}
}

// scrape reads /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the sum of the samples of a counter or gauge family whose labels
// include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func post(t *testing.T, url, key, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBinaryCLIMetricsAndRecovery drives the real binary: a fresh start,
// the daily commands with tables, JSON and -q, /metrics after real traffic
// (counters moved by exactly what was sent), /readyz, a port clash, and a
// key recovery on the stopped data directory.
func TestBinaryCLIMetricsAndRecovery(t *testing.T) {
	l := binary(t)
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, l, dir)
	if !strings.HasPrefix(s.out.String(), "Starting Logbook") {
		t.Errorf("first line: %q", strings.SplitN(s.out.String(), "\n", 2)[0])
	}
	if s.key == "" {
		t.Fatalf("no admin key printed:\n%s", s.out.String())
	}
	admin := l.with("LOGBOOK_URL="+s.url, "LOGBOOK_API_KEY="+s.key)
	admin.ok("user", "create", "alice", "-email", "alice@example.com")
	admin.ok("user", "create", "bob")
	admin.ok("team", "create", "vision")
	admin.ok("team", "add", "vision", "alice")
	alice := strings.TrimSpace(admin.ok("key", "create", "alice", "-q"))
	bob := strings.TrimSpace(admin.ok("key", "create", "bob", "-q"))
	if !strings.HasPrefix(alice, "lb-") || strings.Contains(alice, "\n") {
		t.Fatalf("key create -q printed %q", alice)
	}
	a := l.with("LOGBOOK_URL="+s.url, "LOGBOOK_API_KEY="+alice)
	a.ok("project", "create", "vision/seg")
	a.ok("invite", "vision/seg", "bob", "-role", "viewer")
	a.ok("invite", "vision/seg", "carol@example.com")
	if o := a.ok("members", "vision/seg"); !regexp.MustCompile(`(?m)^bob +viewer`).MatchString(o) || !strings.Contains(o, "carol@example.com") {
		t.Errorf("members table:\n%s", o)
	}
	a.ok("role", "vision/seg", "bob", "member")
	a.ok("remove", "vision/seg", "carol@example.com")
	var ms []struct{ Username, Role string }
	if err := json.Unmarshal([]byte(a.ok("members", "vision/seg", "-o", "json")), &ms); err != nil || len(ms) != 2 {
		t.Errorf("members -o json: %v %+v", err, ms)
	}

	before := scrape(t, s.url)
	// Traffic: bob (a Member now) starts two runs and logs to one.
	p := s.url + "/api/v1/projects/vision/seg/runs"
	const requests, rows, metricsPerRow = 7, 3, 2
	startRun := func(body string) string {
		req, _ := http.NewRequest("POST", p, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bob)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			RunID string `json:"run_id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out.RunID
	}
	r1 := startRun(`{"name":"fast","job_type":"train","config":{"lr":0.1}}`)
	r2 := startRun(`{"name":"slow","job_type":"eval","config":{"lr":0.001}}`)
	step := 0
	for i := 0; i < requests; i++ {
		var b strings.Builder
		b.WriteString(`{"rows":[`)
		for j := 0; j < rows; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"step":%d,"values":{"loss":%g,"acc":%g}}`, step, 1/float64(step+1), float64(step)/100)
			step++
		}
		b.WriteString("]}")
		if st := post(t, p+"/"+r1+"/log", bob, b.String()); st != 202 {
			t.Fatalf("log: %d", st)
		}
	}
	// A refusal: alice removes bob's write access, then bob tries again.
	a.ok("role", "vision/seg", "bob", "viewer")
	if st := post(t, p, bob, `{"name":"refused"}`); st != 403 {
		t.Fatalf("viewer starting a run: %d", st)
	}
	wantPoints := float64(requests * rows * metricsPerRow)
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		after = scrape(t, s.url)
		if value(after, "logbook_ingest_points_total", nil)-value(before, "logbook_ingest_points_total", nil) >= wantPoints || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	delta := func(name string, labels map[string]string) float64 {
		return value(after, name, labels) - value(before, name, labels)
	}
	logRoute := map[string]string{"route": "/api/v1/projects/{entity}/{project}/runs/{run}/log", "method": "POST", "status": "202"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"logbook_http_requests_total", logRoute, requests},
		{"logbook_http_request_duration_seconds", logRoute, requests},
		{"logbook_http_requests_total", map[string]string{"route": "/api/v1/projects/{entity}/{project}/runs", "method": "POST", "status": "201"}, 2},
		{"logbook_http_requests_total", map[string]string{"route": "/api/v1/projects/{entity}/{project}/runs", "method": "POST", "status": "403"}, 1},
		{"logbook_ingest_points_total", nil, wantPoints},
		{"logbook_ingest_proposals_total", map[string]string{"type": "metrics_logged", "result": "accepted"}, requests},
		{"logbook_ingest_proposals_total", map[string]string{"type": "run_started", "result": "accepted"}, 2},
		{"logbook_ingest_proposals_total", map[string]string{"type": "role_changed", "result": "accepted"}, 1},
		{"logbook_ingest_proposals_total", map[string]string{"type": "run_started", "result": "rejected", "reason": "forbidden"}, 1},
	} {
		if got := delta(c.name, c.labels); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value(after, "logbook_jetstream_stream_messages", map[string]string{"stream": "LB_EVENTS"}); v < 10 {
		t.Errorf("LB_EVENTS messages = %v", v)
	}
	if _, ok := after["logbook_projector_lag_events"]; !ok {
		t.Error("no logbook_projector_lag_events")
	}
	if resp, err := http.Get(s.url + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("readyz: %v %v", resp, err)
	}

	// Reads: runs with filters, sort, -q; a bad filter; history; export.
	time.Sleep(200 * time.Millisecond)
	if o := a.ok("runs", "vision/seg", "-q", "config.lr>=0.01"); strings.TrimSpace(o) != r1 {
		t.Errorf("runs config.lr>=0.01 -q = %q, want %s", o, r1)
	}
	if o := a.ok("runs", "vision/seg", "-q", "-sort", "name"); strings.Fields(o)[0] != r1 || strings.Fields(o)[1] != r2 {
		t.Errorf("runs -sort name -q = %q", o)
	}
	if o := a.ok("runs", "vision/seg", "-job-type", "eval"); !strings.Contains(o, "slow") || strings.Contains(o, "fast") || !strings.Contains(o, "STATE") {
		t.Errorf("runs -job-type eval:\n%s", o)
	}
	if _, e, code := a.run("runs", "vision/seg", "-state", "broken"); code != 1 || !strings.Contains(e, "invalid_filter") {
		t.Errorf("runs -state broken: exit %d %q", code, e)
	}
	if o, e, _ := a.run("runs", "vision/seg", "-limit", "1"); len(strings.Split(strings.TrimSpace(o), "\n")) != 2 || !strings.Contains(e, "-cursor") {
		t.Errorf("runs -limit 1: %q %q", o, e)
	}
	if o := a.ok("history", "vision/seg", r1, "-metric", "loss"); !strings.Contains(o, "STEP") || len(strings.Split(strings.TrimSpace(o), "\n")) != requests*rows+1 {
		t.Errorf("history -metric loss:\n%s", o)
	}
	if o := a.ok("export", "vision/seg", r1); !strings.HasPrefix(o, "step,time,acc,loss\n0,") || strings.Count(o, "\n") != requests*rows+1 {
		t.Errorf("export csv:\n%s", o)
	}
	if o := a.ok("export", "vision/seg", r1, "-format", "ndjson"); strings.Count(o, "\n") != requests*rows {
		t.Errorf("export ndjson:\n%s", o)
	}

	// A second Logbook on the same NATS port fails at once, naming the flag.
	natsAddr := strings.TrimPrefix(s.nats, "nats://")
	began := time.Now()
	_, e, code := l.run("serve", "-data.dir", filepath.Join(t.TempDir(), "other"), "-http.addr", "127.0.0.1:0", "-nats.addr", natsAddr)
	if code != 1 || !strings.Contains(e, "-nats.addr "+natsAddr) || time.Since(began) > 10*time.Second {
		t.Errorf("port clash: exit %d after %s: %q", code, time.Since(began), e)
	}
	httpAddr := strings.TrimPrefix(s.url, "http://")
	_, e, code = l.run("serve", "-data.dir", filepath.Join(t.TempDir(), "other"), "-http.addr", httpAddr, "-nats.addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(e, "-http.addr "+httpAddr) {
		t.Errorf("http port clash: exit %d: %q", code, e)
	}

	// Key recovery: refused while running; on the stopped data directory it
	// records a new key, printed once.
	if _, e, code := l.run("admin", "reset-key", "-data.dir", dir); code != 1 || !strings.Contains(e, "stop it first") {
		t.Errorf("reset-key while running: exit %d %q", code, e)
	}
	s.stop(t)
	newKey := strings.TrimSpace(l.ok("admin", "reset-key", "-data.dir", dir, "-q", "-revoke-others"))
	if !regexp.MustCompile(`^lb-[0-9a-f]{48}$`).MatchString(newKey) {
		t.Fatalf("reset-key -q printed %q", newKey)
	}
	// LOGBOOK_ADMIN_API_KEY that is not the admin's is refused loudly.
	_, e, code = l.with("LOGBOOK_ADMIN_API_KEY=lb-"+strings.Repeat("ab", 24)).run("serve", "-data.dir", dir, "-http.addr", "127.0.0.1:0", "-nats.addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(e, "admin reset-key") {
		t.Errorf("unknown LOGBOOK_ADMIN_API_KEY on an existing data dir: exit %d %q", code, e)
	}
	s2 := startServer(t, l.with("LOGBOOK_ADMIN_API_KEY="+newKey), dir)
	if s2.key != "" {
		t.Errorf("a second admin key was printed on restart")
	}
	if o := l.with("LOGBOOK_URL="+s2.url, "LOGBOOK_API_KEY="+newKey).ok("whoami", "-q"); strings.TrimSpace(o) != "admin" {
		t.Errorf("whoami with the reset key: %q", o)
	}
	if _, e, code := l.with("LOGBOOK_URL="+s2.url, "LOGBOOK_API_KEY="+s.key).run("whoami"); code != 1 || !strings.Contains(e, "401") {
		t.Errorf("the old admin key after reset-key -revoke-others: exit %d %q", code, e)
	}
}
