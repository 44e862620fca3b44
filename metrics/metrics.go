// Package metrics defines every Prometheus metric Logbook exports, in one
// place, with the official client library. The domain packages never
// import it: the edges instrument themselves (the http middleware and rate
// limiter, the ingest decider's observer hook) or are sampled at scrape time
// (streams, inbox, lag, Badger sizes, rebuild progress) through the probe
// functions the wiring (package app) installs.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is one process's registry and the metrics its edges update.
type Metrics struct {
	Registry *prometheus.Registry

	// HTTPRequests counts answered requests by route pattern, method and
	// status; HTTPDuration is their latency.
	HTTPRequests *prometheus.CounterVec
	HTTPDuration *prometheus.HistogramVec
	// RateLimited counts requests refused by the per-key limit (429).
	RateLimited prometheus.Counter
	// Proposals counts decided proposals by event type, result
	// (accepted, rejected, duplicate) and reason (the rejection code).
	Proposals *prometheus.CounterVec
	// Points counts metric values appended to the log (one per metric per
	// accepted row).
	Points prometheus.Counter

	probes    *probes
	component string
}

// New returns the metrics of a process named component (a constant label
// of every Logbook metric), with the Go runtime and process collectors.
func New(component string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(o prometheus.Opts) prometheus.Opts {
		o.Namespace = "logbook"
		o.ConstLabels = prometheus.Labels{"component": component}
		return o
	}
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts(f(prometheus.Opts{Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern, method and status."})), []string{"route", "method", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "logbook", Subsystem: "http", Name: "request_duration_seconds",
			Help:        "Time to answer an HTTP request (streams: until the last byte), by route pattern, method and status.",
			ConstLabels: prometheus.Labels{"component": component},
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"route", "method", "status"}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Subsystem: "http", Name: "rate_limited_total",
			Help: "Requests refused with 429 by the per-API-key rate limit."}))),
		Proposals: prometheus.NewCounterVec(prometheus.CounterOpts(f(prometheus.Opts{Subsystem: "ingest", Name: "proposals_total",
			Help: "Proposals decided, by event type, result (accepted, rejected, duplicate) and reason (rejection code)."})),
			[]string{"type", "result", "reason"}),
		Points: prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Subsystem: "ingest", Name: "points_total",
			Help: "Metric points appended to the log (one per metric of an accepted row)."}))),
	}
	m.probes, m.component = newProbes(component), component
	reg.MustRegister(m.HTTPRequests, m.HTTPDuration, m.RateLimited, m.Proposals, m.Points, m.probes)
	return m
}

// ObserveProposal counts a decided proposal and the points it appended.
// (The signature matches ingest.Decider.Observe.)
func (m *Metrics) ObserveProposal(typ, result, reason string, points int) {
	if m == nil {
		return
	}
	m.Proposals.WithLabelValues(typ, result, reason).Inc()
	if points > 0 {
		m.Points.Add(float64(points))
	}
}

// Stream is a JetStream stream's size.
type Stream struct {
	Name     string
	Messages uint64
	Bytes    uint64
}

// Decider is the write side's backlog: the inbox (proposals not yet
// decided and acknowledged) and how old its oldest proposal is.
type Decider struct {
	InboxDepth uint64
	// Pending are the proposals not yet delivered to a decider.
	Pending    uint64
	LagSeconds float64
}

// Projector is a read model's state: how far behind the events stream it
// is, its size, and the rebuild (or catch-up at start) in flight.
type Projector struct {
	Seq        uint64
	LagEvents  uint64
	LagSeconds float64
	LSMBytes   int64
	VlogBytes  int64
	// Rebuilding is set while a rebuild (or the catch-up at start) runs.
	Rebuilding     bool
	RebuildApplied uint64
	RebuildTotal   uint64
	RebuildRate    float64
}

// Probes sample state at scrape time; any may be nil.
type Probes struct {
	Streams   func(ctx context.Context) ([]Stream, error)
	Decider   func(ctx context.Context) (Decider, error)
	Projector func(ctx context.Context) (Projector, error)
}

// SetProbes installs the functions sampled at each scrape.
func (m *Metrics) SetProbes(p Probes) { m.probes.set(p) }

// ProbeTimeout bounds each probe of a scrape.
const ProbeTimeout = 2 * time.Second
