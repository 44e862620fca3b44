package projections

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/par"
)

// Rebuild of a log shaped like cmd/loadgen's: 8 runs logging batches of
// 1,000 rows of 20 metrics in turn (2M points), read in fetches of 20
// events (bus.Read's fetch of 16 MiB at 785 KB an event). The baseline,
// measured in the same run, decodes the same events on every core and
// folds nothing (x-decode).
//
//	go test ./projections -run '^$' -bench Rebuild -benchtime 3x

const rbRuns, rbMetrics, rbRows, rbPoints, rbFetch = 8, 20, 1000, 2_000_000, 20

func loadgenLog(b *testing.B) []RawRecord {
	b.Helper()
	var log []RawRecord
	add := func(e events.Event) {
		e.ID = events.NewID(t0bench)
		e.Type = e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		e.Actor = "alice"
		e.Time = t0bench.Add(time.Duration(len(log)) * time.Millisecond)
		data, err := events.Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: data, Time: e.Time})
	}
	add(events.Event{Entity: "alice", Payload: events.UserCreatedV1{Username: "alice", Email: "alice@example.com"}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}})
	for r := range rbRuns {
		id := fmt.Sprintf("run%d", r)
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: id}})
	}
	for n := 0; n*rbRows*rbMetrics < rbPoints; n++ {
		id := fmt.Sprintf("run%d", n%rbRuns)
		step := int64(n/rbRuns) * rbRows
		rows := make([]events.Row, rbRows)
		for i := range rows {
			v := make(map[string]events.Value, rbMetrics)
			for k := range rbMetrics {
				v["train/metric_"+strconv.Itoa(k)] = events.Value(float64(i*k)*0.001 + float64(n))
			}
			rows[i] = events.Row{Step: step + int64(i), Time: 1795779452.902 + float64(step+int64(i)), Values: v}
		}
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.MustRows(rows)})
	}
	return log
}

var t0bench = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func BenchmarkRebuild(b *testing.B) {
	log := loadgenLog(b)
	decode := func() {
		par.Do(len(log), func(i int) {
			if _, err := events.Decode(log[i].Data); err != nil {
				b.Error(err)
			}
		})
	}
	start := time.Now()
	decode()
	base := time.Since(start)
	for _, c := range []struct {
		name string
		fn   func(*Store) error
	}{
		{"before", func(s *Store) error { return sequentialFollow(s, sliceSource(log, rbFetch)) }},
		{"replay", func(s *Store) error {
			_, err := s.ReplayTo(context.Background(), sliceSource(log, rbFetch), 0, nil)
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				b.StopTimer()
				s, err := Open(Options{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := c.fn(s); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if s.Seq() != uint64(len(log)) {
					b.Fatalf("rebuilt to seq %d, want %d", s.Seq(), len(log))
				}
				s.Close()
				b.StartTimer()
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(rbPoints/per.Seconds(), "points/s")
			b.ReportMetric(float64(per)/float64(base), "x-decode")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}

// sequentialFollow is Follow as it was before readAhead: read a batch,
// decode it on every core, fold it, then read the next.
func sequentialFollow(s *Store, src Source) error {
	return src(context.Background(), s.Seq()+1, func(batch []RawRecord) error {
		d := decodeBatch(batch)
		for _, err := range d.errs {
			if err != nil {
				return err
			}
		}
		return s.Apply(d.recs)
	})
}

// cpuTime is the CPU time (user and system) of the process so far: with
// other work on the machine, CPU per operation says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
