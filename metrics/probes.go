package metrics

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// probes is a collector that samples Probes at each scrape; a probe that
// fails is counted in logbook_probe_errors_total and its metrics left out.
type probes struct {
	mu sync.Mutex
	p  Probes

	streamMsgs, streamBytes                              *prometheus.Desc
	inbox, deciderPending, deciderLag                    *prometheus.Desc
	projSeq, projLagEvents, projLagSeconds, lsm, vlog    *prometheus.Desc
	rebuilding, rebuildApplied, rebuildTotal, rebuildEPS *prometheus.Desc
	errors                                               *prometheus.CounterVec
}

func newProbes(component string) *probes {
	c := prometheus.Labels{"component": component}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("logbook_"+name, help, labels, c)
	}
	return &probes{
		streamMsgs:     d("jetstream_stream_messages", "Messages in a JetStream stream.", "stream"),
		streamBytes:    d("jetstream_stream_bytes", "Bytes in a JetStream stream.", "stream"),
		inbox:          d("ingest_inbox_depth", "Proposals in the inbox stream (LB_PROPOSALS): not yet decided and acknowledged."),
		deciderPending: d("decider_lag_events", "Proposals not yet delivered to a decider."),
		deciderLag:     d("decider_lag_seconds", "Age of the oldest proposal in the inbox (0 when empty)."),
		projSeq:        d("projector_seq", "Last events-stream sequence applied to the read model."),
		projLagEvents:  d("projector_lag_events", "Events in the log not yet applied to the read model."),
		projLagSeconds: d("projector_lag_seconds", "Age of the oldest event not yet applied to the read model (0 when caught up)."),
		lsm:            d("badger_lsm_bytes", "Size of the read model's Badger LSM tree."),
		vlog:           d("badger_vlog_bytes", "Size of the read model's Badger value log."),
		rebuilding:     d("rebuild_running", "1 while a rebuild (or the catch-up at start) of the read model runs."),
		rebuildApplied: d("rebuild_events_applied", "Log sequence the rebuild (or catch-up at start) in flight has reached."),
		rebuildTotal:   d("rebuild_events_total", "Log sequence the rebuild in flight must reach (the log's last sequence when it started)."),
		rebuildEPS:     d("rebuild_events_per_second", "Speed of the rebuild in flight over its last seconds."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "logbook", Name: "probe_errors_total", ConstLabels: c,
			Help: "Scrape-time probes that failed (their metrics are left out of that scrape)."}, []string{"probe"}),
	}
}

func (p *probes) set(x Probes) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p = x
}

func (p *probes) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.streamMsgs, p.streamBytes, p.inbox, p.deciderPending, p.deciderLag, p.projSeq,
		p.projLagEvents, p.projLagSeconds, p.lsm, p.vlog, p.rebuilding, p.rebuildApplied, p.rebuildTotal, p.rebuildEPS} {
		ch <- d
	}
	p.errors.Describe(ch)
}

func (p *probes) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	pr := p.p
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if pr.Streams != nil {
		if ss, err := pr.Streams(ctx); err != nil {
			p.errors.WithLabelValues("streams").Inc()
		} else {
			for _, s := range ss {
				g(p.streamMsgs, float64(s.Messages), s.Name)
				g(p.streamBytes, float64(s.Bytes), s.Name)
			}
		}
	}
	if pr.Decider != nil {
		if d, err := pr.Decider(ctx); err != nil {
			p.errors.WithLabelValues("decider").Inc()
		} else {
			g(p.inbox, float64(d.InboxDepth))
			g(p.deciderPending, float64(d.Pending))
			g(p.deciderLag, d.LagSeconds)
		}
	}
	if pr.Projector != nil {
		if s, err := pr.Projector(ctx); err != nil {
			p.errors.WithLabelValues("projector").Inc()
		} else {
			g(p.projSeq, float64(s.Seq))
			g(p.projLagEvents, float64(s.LagEvents))
			g(p.projLagSeconds, s.LagSeconds)
			g(p.lsm, float64(s.LSMBytes))
			g(p.vlog, float64(s.VlogBytes))
			running := 0.0
			if s.Rebuilding {
				running = 1
			}
			g(p.rebuilding, running)
			g(p.rebuildApplied, float64(s.RebuildApplied))
			g(p.rebuildTotal, float64(s.RebuildTotal))
			g(p.rebuildEPS, s.RebuildRate)
		}
	}
	p.errors.Collect(ch)
}
