package http

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/logbook/logbook/metrics"
)

// Ops serves what operators scrape and probe: /metrics (Prometheus text
// format) and /readyz, and counts every request of the handler it is part
// of (Handler wraps the routes with it).
//
// /healthz answers as long as the process serves HTTP (liveness); /readyz
// answers 200 only when every readiness check passes (the decider has
// rebuilt its state, the read model has caught up with the log as it was at
// start, NATS is connected), 503 with the failing checks otherwise.
type Ops struct {
	Metrics *metrics.Metrics
	// Ready are the readiness checks: nil when ready, else why not.
	Ready []func(ctx context.Context) error
	// Notes are lines /readyz adds whatever the checks say (the read
	// models' lag as the write side sees it).
	Notes []func(ctx context.Context) string
}

// Register adds /metrics and /readyz.
func (o *Ops) Register(mux *http.ServeMux) {
	if o.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{Registry: o.Metrics.Registry}))
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var bad []string
		for _, check := range o.Ready {
			if err := check(ctx); err != nil {
				bad = append(bad, err.Error())
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		if len(bad) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(bad, "; "))
		} else {
			_, _ = w.Write([]byte("ready\n"))
		}
		for _, note := range o.Notes {
			fmt.Fprintln(w, note(ctx))
		}
	})
}

// wrap counts and times every request by its route pattern (the mux's
// pattern, "unmatched" for a 404 without one), method and status.
func (o *Ops) wrap(next http.Handler) http.Handler {
	if o.Metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		} else if _, p, ok := strings.Cut(route, " "); ok {
			route = p // the method is its own label
		}
		status := strconv.Itoa(rec.status())
		o.Metrics.HTTPRequests.WithLabelValues(route, r.Method, status).Inc()
		o.Metrics.HTTPDuration.WithLabelValues(route, r.Method, status).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status written through it; it flushes (the
// rebuild and export streams need it) and unwraps for
// http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
