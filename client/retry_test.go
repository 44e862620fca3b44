package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&netError{errors.New("connection refused")}, true},
		{fmt.Errorf("wrapped: %w", &netError{errors.New("reset")}), true},
		{&APIError{Status: 408}, true},
		{&APIError{Status: 429}, true},
		{&APIError{Status: 500}, true},
		{&APIError{Status: 502}, true},
		{&APIError{Status: 503, Code: "undecided"}, true},
		{&APIError{Status: 507, Code: "storage_full"}, true},
		{&APIError{Status: 501}, false},
		{&APIError{Status: 505}, false},
		{&APIError{Status: 400, Code: "invalid"}, false},
		{&APIError{Status: 401}, false},
		{&APIError{Status: 403, Code: "forbidden"}, false},
		{&APIError{Status: 404}, false},
		{&APIError{Status: 409}, false},
		{&APIError{Status: 413}, false},
		{errors.New("logbook: decode answer"), false},
	}
	for _, tc := range tests {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%#v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-4", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"86400", maxRetryAfter},
	}
	for _, tc := range tests {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.h, got, tc.want)
		}
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	for attempt := 1; attempt <= 100; attempt++ {
		d := min(firstBackoff<<min(attempt-1, 16), maxBackoff)
		w := wait(attempt, &APIError{Status: 502})
		if w < d/2 || w > d {
			t.Fatalf("attempt %d waits %s, want within [%s, %s]", attempt, w, d/2, d)
		}
	}
	if w := wait(1, &APIError{Status: 429, retryAfter: 7 * time.Second}); w != 7*time.Second {
		t.Fatalf("a Retry-After of 7s waits %s", w)
	}
}

// fakeServer answers the statuses in order (then 200 {}), with the given
// headers, and records each request's Idempotency-Key.
type fakeServer struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	keys    []string
	times   []time.Time
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	f.times = append(f.times, time.Now())
	var answer func(http.ResponseWriter)
	if len(f.answers) > 0 {
		answer, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	if answer == nil {
		w.Write([]byte(`{"seq": 7}`))
		return
	}
	answer(w)
}

func status(code int, retryAfter string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"code":"c%d","message":"m"}}`, code)
	}
}

func mustConn(t *testing.T, f *fakeServer) *conn {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &conn{base: srv.URL, key: "k", http: srv.Client()}
}

// One loop retries with the same key, waits the Retry-After of a 429 and a
// 503, and stops at the first answer no retry changes.
func TestDoRetriesWithOneKeyAndHonoursRetryAfter(t *testing.T) {
	f := &fakeServer{answers: []func(http.ResponseWriter){
		status(502, ""), status(429, "1"), status(503, "1"), status(500, ""), status(400, ""),
	}}
	c := mustConn(t, f)
	err := c.do(context.Background(), "POST", "/x", "01KEY", map[string]int{"a": 1}, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "c400" {
		t.Fatalf("do = %v, want the 400", err)
	}
	if len(f.keys) != 5 {
		t.Fatalf("%d attempts, want 5 (502, 429, 503, 500 retried; 400 not)", len(f.keys))
	}
	for _, k := range f.keys {
		if k != "01KEY" {
			t.Fatalf("keys %v, want 01KEY on every attempt", f.keys)
		}
	}
	for _, i := range []int{2, 3} { // after the 429 and after the 503
		if gap := f.times[i].Sub(f.times[i-1]); gap < time.Second {
			t.Errorf("attempt %d came %s after a Retry-After of 1s", i+1, gap)
		}
	}
	if gap := f.times[1].Sub(f.times[0]); gap > time.Second {
		t.Errorf("the first retry waited %s; the backoff starts at %s", gap, firstBackoff)
	}
}

// A retryable failure that outlasts the context ends with both the last
// answer and the context's error.
func TestDoGivesUpWithTheContext(t *testing.T) {
	f := &fakeServer{}
	for range 1000 {
		f.answers = append(f.answers, status(503, ""))
	}
	c := mustConn(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out struct{ Seq int }
	err := c.do(ctx, "POST", "/x", "01KEY", struct{}{}, &out)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("do = %v, want the 503 and the deadline", err)
	}
	if len(f.keys) < 2 {
		t.Fatalf("%d attempts in 500ms", len(f.keys))
	}
}
