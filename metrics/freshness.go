package metrics

import "github.com/prometheus/client_golang/prometheus"

// Freshness is the write side's view of the read models' lag and what it
// did to writers (ingest.Freshness and ingest.BackPressure).
type Freshness struct {
	// BehindSeconds is the age of the oldest metric event the edge
	// appended that a counted projector has not folded; BehindEvents how
	// many there are.
	BehindSeconds float64
	BehindEvents  int
	// Projectors are the projectors the edge waits for; Ignored those it
	// heard from but does not wait for (silent, stuck, catching up).
	Projectors, Ignored int
	// Held, Refused and HeldBehind count metric batches held then
	// accepted, held then refused (429), and held because the read models
	// were behind (the rest met a full bulk lane).
	Held, Refused, HeldBehind int64
}

// WatchFreshness exports f, sampled at each scrape.
func (m *Metrics) WatchFreshness(f func() Freshness) {
	c := prometheus.Labels{"component": m.component}
	gauge := func(name, help string, v func(Freshness) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "logbook", Subsystem: "ingest", Name: name, Help: help, ConstLabels: c},
			func() float64 { return v(f()) })
	}
	counter := func(name, help string, v func(Freshness) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "logbook", Subsystem: "ingest", Name: name, Help: help, ConstLabels: c},
			func() float64 { return float64(v(f())) })
	}
	m.Registry.MustRegister(
		gauge("read_model_behind_seconds", "Age of the oldest metric event this edge appended that a projector it waits for has not folded (metric writers are held past ingest.DefaultMaxLag).",
			func(f Freshness) float64 { return f.BehindSeconds }),
		gauge("read_model_behind_events", "Metric events this edge appended not yet folded by every projector it waits for.",
			func(f Freshness) float64 { return float64(f.BehindEvents) }),
		gauge("projectors_counted", "Projectors whose position this edge waits for.",
			func(f Freshness) float64 { return float64(f.Projectors) }),
		gauge("projectors_ignored", "Projectors heard from but not waited for (silent or stuck for 10 s, catching up, stalled).",
			func(f Freshness) float64 { return float64(f.Ignored) }),
		counter("batches_held_total", "Metric batches held by back-pressure, then accepted.", func(f Freshness) int64 { return f.Held }),
		counter("batches_refused_total", "Metric batches held by back-pressure, then refused with 429.", func(f Freshness) int64 { return f.Refused }),
		counter("batches_held_behind_total", "Metric batches held at least once because the read models were behind.", func(f Freshness) int64 { return f.HeldBehind }),
	)
}
