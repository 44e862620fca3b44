package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/client"
)

const adminKey = "lb-clienttest000000000000000000000000000000000000admin"

// logbook is a running all-in-one Logbook with a project your-team-name/
// awesome-segmentation and a member "bob" whose key is bobKey.
type logbook struct {
	url, bobKey string
	stop        func()
}

func startLogbook(dir string) (*logbook, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.AllInOne(ctx, app.AllInOneConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", AdminKey: adminKey},
			io.Discard, func(a app.Addrs) { ready <- a })
	}()
	var a app.Addrs
	select {
	case a = <-ready:
	case err := <-done:
		cancel()
		return nil, err
	}
	lb := &logbook{url: a.HTTP, stop: func() { cancel(); <-done }}
	call := func(key, method, path string, body any, out any) error {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, lb.url+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s", method, path, data)
		}
		if out != nil {
			return json.Unmarshal(data, out)
		}
		return nil
	}
	var key struct {
		Key string `json:"key"`
	}
	steps := []error{
		call(adminKey, "POST", "/api/v1/users", map[string]string{"username": "bob"}, nil),
		call(adminKey, "POST", "/api/v1/users/bob/keys", map[string]string{"name": "job"}, &key),
		call(adminKey, "POST", "/api/v1/teams", map[string]string{"name": "your-team-name"}, nil),
		call(adminKey, "POST", "/api/v1/teams/your-team-name/members", map[string]string{"username": "bob"}, nil),
	}
	lb.bobKey = key.Key
	steps = append(steps, call(lb.bobKey, "POST", "/api/v1/projects", map[string]string{"entity": "your-team-name", "name": "awesome-segmentation"}, nil))
	if err := errors.Join(steps...); err != nil {
		lb.stop()
		return nil, err
	}
	return lb, nil
}

func (lb *logbook) get(path string, out any) error {
	req, _ := http.NewRequest("GET", lb.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+lb.bobKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func mustLogbook(t *testing.T) *logbook {
	t.Helper()
	lb, err := startLogbook(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lb.stop)
	return lb
}

// Example shows a training loop logging to Logbook.
func Example() {
	dir, _ := os.MkdirTemp("", "logbook-example-")
	defer os.RemoveAll(dir)
	lb, err := startLogbook(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer lb.stop()

	ctx := context.Background()
	run, err := client.Init(ctx, client.Options{
		BaseURL: lb.url, APIKey: lb.bobKey, // default: $LOGBOOK_URL, $LOGBOOK_API_KEY
		Entity: "your-team-name", Project: "awesome-segmentation",
		Name: "my-run", JobType: "training",
		Config: map[string]any{"learning_rate": 0.001},
	})
	if err != nil {
		log.Fatal(err)
	}
	for step := 0; step < 100; step++ {
		loss := 1 / float64(step+1)
		run.Log(map[string]any{"loss": loss, "accuracy": 1 - loss})
	}
	if err := run.Finish(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(run.Name)

	var got struct {
		State   string             `json:"state"`
		Summary map[string]float64 `json:"summary"`
		Rows    int                `json:"history_rows"`
	}
	lb.get(fmt.Sprintf("/api/v1/projects/your-team-name/awesome-segmentation/runs/%s?min_seq=%d", run.ID, run.Seq()), &got)
	fmt.Println(got.State, got.Rows, got.Summary["loss"])
	// Output:
	// my-run
	// finished 100 0.01
}

// flaky forwards to Logbook but answers 503 to every other log batch
// *after* forwarding it, so the client retries batches that were stored.
func flaky(t *testing.T, target string) (*httptest.Server, *atomic.Int64) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/log") && n.Add(1)%2 == 1 {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r)
			http.Error(w, "gateway hiccup", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A batch whose answer is lost is re-sent with the same idempotency key and
// stored once.
func TestRetriedBatchesAreStoredOnce(t *testing.T) {
	lb := mustLogbook(t)
	proxy, hits := flaky(t, lb.url)
	run, err := client.Init(context.Background(), client.Options{BaseURL: proxy.URL, APIKey: lb.bobKey,
		Entity: "your-team-name", Project: "awesome-segmentation", BatchRows: 50, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := run.Log(map[string]any{"loss": float64(i), "nan": math.NaN()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := run.Finish(); err != nil {
		t.Fatal(err)
	}
	if hits.Load() < 20 {
		t.Fatalf("only %d log requests went through the flaky proxy", hits.Load())
	}
	var pts []struct {
		Step  int64 `json:"step"`
		Value any   `json:"value"`
	}
	if err := lb.get(fmt.Sprintf("/api/v1/projects/your-team-name/awesome-segmentation/runs/%s/history?metric=loss&min_seq=%d", run.ID, run.Seq()), &pts); err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1000 {
		t.Fatalf("%d points stored, want 1000", len(pts))
	}
	for i, p := range pts {
		if p.Step != int64(i) || p.Value != float64(i) {
			t.Fatalf("point %d = %+v", i, p)
		}
	}
}

// Log returns at once while the server is unreachable; the rows are sent
// when it is back, and Finish reports nothing lost.
func TestLogDoesNotWaitForTheNetwork(t *testing.T) {
	lb := mustLogbook(t)
	var down atomic.Bool
	u, _ := url.Parse(lb.url)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			time.Sleep(200 * time.Millisecond) // a slow, failing network
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	run, err := client.Init(context.Background(), client.Options{BaseURL: srv.URL, APIKey: lb.bobKey,
		Entity: "your-team-name", Project: "awesome-segmentation", BatchRows: 10, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	for i := 0; i < 500; i++ {
		if err := run.Log(map[string]any{"x": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Every row is still waiting: none could be delivered.
	if b := run.Buffered(); b == 0 {
		t.Fatalf("Buffered() = 0 while the server is down")
	}
	down.Store(false)
	if err := run.Finish(); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rows int `json:"history_rows"`
	}
	if err := lb.get(fmt.Sprintf("/api/v1/projects/your-team-name/awesome-segmentation/runs/%s?min_seq=%d", run.ID, run.Seq()), &got); err != nil {
		t.Fatal(err)
	}
	if got.Rows != 500 {
		t.Fatalf("%d rows stored, want 500", got.Rows)
	}
}

// A rejection of an asynchronous batch is reported by Finish.
func TestFinishReportsRejections(t *testing.T) {
	lb := mustLogbook(t)
	run, err := client.Init(context.Background(), client.Options{BaseURL: lb.url, APIKey: lb.bobKey,
		Entity: "your-team-name", Project: "awesome-segmentation"})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Log(map[string]any{"_step": 1}); err != nil { // reserved key
		t.Fatal(err)
	}
	err = run.Finish()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != "invalid" || !strings.Contains(ae.Message, "reserved") {
		t.Fatalf("Finish() = %v, want the invalid-key rejection", err)
	}
}

// loseFirstAnswer forwards to Logbook, but for the first request that
// matches it closes the connection instead of answering, as a timeout
// would: Logbook applied the request, the client never hears of it. It
// records the Idempotency-Key of every matching request.
func loseFirstAnswer(t *testing.T, target string, match func(*http.Request) bool) (*httptest.Server, func() []string) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !match(r) {
			proxy.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		first := len(keys) == 1
		mu.Unlock()
		if !first {
			proxy.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
}

// An Init whose answer is lost is retried with the same idempotency key
// and starts exactly one run, under the name asked for.
//
// The retry is answered from the decision already made only if ingest
// recognises the re-sent key; while ingest answers it "503 undecided"
// instead (JetStream drops the re-sent proposal as a duplicate for the
// inbox's 2-minute window), Init keeps retrying and this test takes that
// long.
func TestInitRetriedAfterALostAnswerStartsOneRun(t *testing.T) {
	lb := mustLogbook(t)
	proxy, keys := loseFirstAnswer(t, lb.url, func(r *http.Request) bool {
		return r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/awesome-segmentation/runs")
	})
	start := time.Now()
	run, err := client.Init(context.Background(), client.Options{BaseURL: proxy.URL, APIKey: lb.bobKey,
		Entity: "your-team-name", Project: "awesome-segmentation", Name: "c1-0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Init took %s over %d attempts", time.Since(start).Round(time.Millisecond), len(keys()))
	if err := run.Finish(); err != nil {
		t.Fatal(err)
	}
	if k := keys(); len(k) < 2 || slices.ContainsFunc(k, func(s string) bool { return s != k[0] }) {
		t.Fatalf("Init sent idempotency keys %v; want one key, sent at least twice", k)
	}
	var runs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := lb.get(fmt.Sprintf("/api/v1/projects/your-team-name/awesome-segmentation/runs?min_seq=%d", run.Seq()), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != run.ID || runs[0].Name != "c1-0" || run.Name != "c1-0" {
		t.Fatalf("runs %+v, Init's run %s %q; want one run named c1-0", runs, run.ID, run.Name)
	}
}
