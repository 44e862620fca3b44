package policy

import (
	"strconv"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// BenchmarkDecideMetrics decides a batch of 1,000 rows of 20 metrics for a
// running run: the decider's (and the HTTP edge's dry run's) hot path. The
// baseline, measured in the same run, is one pass over the same values
// (reading every point and nothing else), reported as x-raw-pass.
//
//	go test ./policy -run '^$' -bench DecideMetrics -benchmem
func BenchmarkDecideMetrics(b *testing.B) {
	s := given(world()...)
	const nRows, nMetrics = 1000, 20
	rs := make([]events.Row, nRows)
	for i := range rs {
		v := make(map[string]events.Value, nMetrics)
		for k := range nMetrics {
			v["train/metric_"+strconv.Itoa(k)] = events.Value(float64(i*k) * 0.001)
		}
		rs[i] = events.Row{Step: int64(5 + i), Time: 1795779452.902 + float64(i), Values: v}
	}
	p := onRun("bob", "r1", events.MustRows(rs))
	p.ID = events.NewID(t0)
	p.Time = t0
	if d := Decide(s, p); d.Rejection != nil || len(d.Events) != 1 {
		b.Fatalf("decision %+v", d)
	}
	var sink float64
	raw := func() {
		for _, r := range rs {
			for _, v := range r.Values {
				sink += float64(v)
			}
		}
	}
	n := 0
	start := time.Now()
	for time.Since(start) < 200*time.Millisecond {
		raw()
		n++
	}
	base := time.Since(start) / time.Duration(n)
	b.ResetTimer()
	start = time.Now()
	for b.Loop() {
		Decide(s, p)
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(nRows*nMetrics/per.Seconds(), "points/s")
	b.ReportMetric(float64(per)/float64(base), "x-raw-pass")
	_ = sink
}

// BenchmarkDecideMetricsStraddle decides a 1,000-row x 20-metric batch
// whose first rows were logged before (the run's last step is 4): the
// kept rows' columns are rebuilt.
func BenchmarkDecideMetricsStraddle(b *testing.B) {
	s := given(world()...)
	const nRows, nMetrics = 1000, 20
	var bl events.Builder
	for i := range nRows {
		bl.Row(int64(i), 1795779452.902+float64(i))
		for k := range nMetrics {
			bl.Value("train/metric_"+strconv.Itoa(k), float64(i*k)*0.001)
		}
	}
	pl, err := bl.Build()
	if err != nil {
		b.Fatal(err)
	}
	p := onRun("bob", "r1", pl)
	p.ID = events.NewID(t0)
	p.Time = t0
	if d := Decide(s, p); d.Rejection != nil || len(d.Events) != 1 || d.Dropped != 5 {
		b.Fatalf("decision %+v", d)
	}
	start := time.Now()
	for b.Loop() {
		Decide(s, p)
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(nRows*nMetrics/per.Seconds(), "points/s")
}
