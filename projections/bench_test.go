package projections_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

// Benchmarks of the targets. Each reports its p50 and the ratio to
// a baseline measured in the same run: a raw Badger prefix scan that reads
// every value of the same keys and does nothing with them.
//
//	go test ./projections -run '^$' -bench . -benchtime 200x

// p50 runs fn n times and returns the median duration.
func p50(n int, fn func()) time.Duration {
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		fn()
		d[i] = time.Since(start)
	}
	slices.Sort(d)
	return d[n/2]
}

func rawScan(b *testing.B, s *projections.Store, prefix string) {
	err := s.DB().View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			_ = it.Item().Value(func(v []byte) error { n += len(v); return nil })
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func report(b *testing.B, name string, d, base time.Duration) {
	b.ReportMetric(float64(d.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(base.Microseconds())/1000, "baseline-p50-ms")
	b.ReportMetric(float64(d)/float64(base), "x-baseline")
	b.Logf("%s: p50 %v, baseline (raw Badger prefix scan of the same keys) p50 %v, ratio %.2f", name, d, base, float64(d)/float64(base))
}

// BenchmarkSearchRuns: a project of 10,000 runs; a filtered (job type and a
// config range), sorted (a summary metric, descending) page of 100 runs.
func BenchmarkSearchRuns(b *testing.B) {
	f := openStore(b)
	rng := rand.New(rand.NewPCG(1, 1))
	jobs := []string{"train", "eval", "sweep"}
	const n = 10_000
	batch := make([]events.Event, 0, 1000)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("run%05d", i)
		cfg, _ := json.Marshal(map[string]any{"optimizer": map[string]any{"lr": rng.Float64() / 100, "name": "adam"},
			"epochs": rng.IntN(100), "model": map[string]any{"layers": rng.IntN(50), "width": 512}})
		batch = append(batch,
			events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: id,
				JobType: jobs[i%3], Tags: []string{"t" + fmt.Sprint(i%7)}, Config: cfg}},
			events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.MustRows([]events.Row{
				{Step: 0, Values: map[string]events.Value{"loss": events.Value(rng.Float64()), "acc": events.Value(rng.Float64())}}})})
		if len(batch) == cap(batch) {
			f.add(batch...)
			batch = batch[:0]
		}
	}
	f.add(batch...)
	cond, _ := projections.ParseCond("config.optimizer.lr>=0.002")
	q := projections.RunQuery{JobType: "train", Conds: []projections.Cond{cond}, Sort: "summary.loss", Desc: true, Limit: 100}
	search := func() {
		p, err := f.s.SearchRuns("alice", "p", q)
		if err != nil || len(p.Runs) != 100 {
			b.Fatalf("%d runs, err %v", len(p.Runs), err)
		}
	}
	search() // load the index
	base := p50(20, func() { rawScan(b, f.s, "run/alice/p/") })
	b.ResetTimer()
	d := p50(b.N, search)
	b.StopTimer()
	report(b, "filtered, sorted page of 100 of 10,000 runs", d, base)
}

func millionPoints(b *testing.B) *feeder {
	f := openStore(b)
	f.add(events.Event{Entity: "alice", Project: "p", Run: "r", Payload: events.RunStartedV1{RunID: "r", Name: "r"}})
	rng := rand.New(rand.NewPCG(2, 2))
	const n, per = 1_000_000, 10_000
	for s := int64(0); s < n; s += per {
		rows := make([]events.Row, per)
		for i := range rows {
			step := s + int64(i)
			rows[i] = events.Row{Step: step, Time: 1795779452 + float64(step)/100, Values: map[string]events.Value{"loss": events.Value(rng.Float64())}}
		}
		f.add(events.Event{Entity: "alice", Project: "p", Run: "r", Payload: events.MustRows(rows)})
	}
	return f
}

// BenchmarkDownsample: one metric of 1,000,000 steps into 1,000 buckets.
func BenchmarkDownsample(b *testing.B) {
	f := millionPoints(b)
	ds := func() {
		out, err := f.s.Downsample("alice", "p", "r", "loss", 0, -1, 1000)
		if err != nil || len(out) != 1000 {
			b.Fatalf("%d buckets, err %v", len(out), err)
		}
	}
	ds()
	base := p50(20, func() { rawScan(b, f.s, "hist/alice/p/r\x00loss\x00") })
	b.ResetTimer()
	d := p50(b.N, ds)
	b.StopTimer()
	report(b, "1,000-bucket downsample of 1,000,000 steps", d, base)
}

// BenchmarkExport: the full history of a 1,000,000-step metric as NDJSON
// and as CSV, written to io.Discard.
func BenchmarkExport(b *testing.B) {
	f := millionPoints(b)
	base := p50(10, func() { rawScan(b, f.s, "hist/alice/p/r\x00loss\x00") })
	for _, format := range []string{"ndjson", "csv"} {
		b.Run(format, func(b *testing.B) {
			exp := func() {
				res, err := f.s.Export("alice", "p", "r", projections.ExportOptions{Format: format, Header: true}, io.Discard)
				if err != nil || res.Rows != 1_000_000 {
					b.Fatalf("%d rows, err %v", res.Rows, err)
				}
			}
			b.ResetTimer()
			d := p50(b.N, exp)
			b.StopTimer()
			b.ReportMetric(1e6/d.Seconds(), "points/s")
			report(b, "full "+format+" export of 1,000,000 points", d, base)
		})
	}
}
