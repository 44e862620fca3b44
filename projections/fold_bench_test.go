package projections_test

import (
	"context"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

// Fold and replay of metric batches: 10 events of 1,000 rows of 20
// metrics (200,000 points) per operation, applied in one Apply as the
// projector applies a fetched batch. The baseline, measured in the same
// run, is raw Badger: one transaction writing 20 keys of 24 KB (the
// points' bytes) per event, reported as x-raw-badger.
//
//	go test ./projections -run '^$' -bench 'Fold|Replay' -benchmem

const benchRows, benchMetrics, benchEvents = 1000, 20, 10

func metricBatch(step int64) events.MetricsLoggedV2 { return metricRows(step, benchRows) }

// metricRows is n rows of benchMetrics metrics from step on.
func metricRows(step int64, n int) events.MetricsLoggedV2 {
	rs := make([]events.Row, n)
	for i := range rs {
		v := make(map[string]events.Value, benchMetrics)
		for k := range benchMetrics {
			v["train/metric_"+strconv.Itoa(k)] = events.Value(float64(i*k) * 0.001)
		}
		rs[i] = events.Row{Step: step + int64(i), Time: 1795779452.902 + float64(i), Values: v}
	}
	return events.MustRows(rs)
}

// rawBadger writes what benchEvents batches of points weigh, as plain keys.
func rawBadger(b *testing.B) time.Duration {
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, benchRows*24)
	n := 0
	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		txn := db.NewTransaction(true)
		for e := range benchEvents {
			for m := range benchMetrics {
				k := binary.BigEndian.AppendUint64([]byte("hist/alice/p/r\x00train/metric_"+strconv.Itoa(m)+"\x00"), uint64(n*benchEvents+e))
				if err := txn.Set(k, val); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return time.Since(start) / time.Duration(n)
}

func reportPoints(b *testing.B, base time.Duration) {
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(benchRows*benchMetrics*benchEvents/per.Seconds(), "points/s")
	b.ReportMetric(float64(per)/float64(base), "x-raw-badger")
}

// BenchmarkFoldMetrics: Store.Apply of decoded events.
func BenchmarkFoldMetrics(b *testing.B) {
	base := rawBadger(b)
	f := openStore(b)
	f.start("r", events.RunStartedV1{})
	step := int64(0)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		evs := make([]events.Event, benchEvents)
		for i := range evs {
			evs[i] = events.Event{Entity: "alice", Project: "p", Run: "r", Payload: metricBatch(step)}
			step += benchRows
		}
		b.StartTimer()
		f.add(evs...)
	}
	reportPoints(b, base)
	b.ReportMetric(float64(historyBytes(b, f.s))/float64(step*benchMetrics), "chunk-B/pt")
}

// BenchmarkFoldSmallBatches: Store.Apply of 100 events of 10 rows of 20
// metrics (W&B's file_stream sends a few rows at a time): every event
// appends to each metric's open chunk.
func BenchmarkFoldSmallBatches(b *testing.B) {
	f := openStore(b)
	f.start("r", events.RunStartedV1{})
	step := int64(0)
	const rows, evCount = 10, 100
	for b.Loop() {
		b.StopTimer()
		evs := make([]events.Event, evCount)
		for i := range evs {
			evs[i] = events.Event{Entity: "alice", Project: "p", Run: "r", Payload: metricRows(step, rows)}
			step += rows
		}
		b.StartTimer()
		f.add(evs...)
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(rows*evCount*benchMetrics/per.Seconds(), "points/s")
}

// historyBytes sums the sizes of the history chunks' values.
func historyBytes(b *testing.B, s *projections.Store) int64 {
	var n int64
	err := s.DB().View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("hist/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n += it.Item().ValueSize()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkReplayMetrics: Store.Follow of encoded events (decode + fold),
// the rebuild path.
func BenchmarkReplayMetrics(b *testing.B) {
	base := rawBadger(b)
	f := openStore(b)
	f.start("r", events.RunStartedV1{})
	seq := f.s.Seq()
	step := int64(0)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		recs := make([]projections.RawRecord, benchEvents)
		for i := range recs {
			seq++
			e := events.Event{ID: events.NewID(t0), Entity: "alice", Project: "p", Run: "r", Actor: "alice", Time: t0, Payload: metricBatch(step)}
			step += benchRows
			data, err := events.Encode(e)
			if err != nil {
				b.Fatal(err)
			}
			recs[i] = projections.RawRecord{Seq: seq, Data: data}
		}
		b.StartTimer()
		src := func(ctx context.Context, from uint64, fn func([]projections.RawRecord) error) error { return fn(recs) }
		if err := f.s.Follow(context.Background(), src); err != nil {
			b.Fatal(err)
		}
	}
	reportPoints(b, base)
}
