package projections_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// feeder appends events to a store as a log would.
type feeder struct {
	t   testing.TB
	s   *projections.Store
	seq uint64
}

func openStore(t testing.TB) *feeder {
	t.Helper()
	s, err := projections.Open(projections.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &feeder{t: t, s: s}
	f.add(events.Event{Entity: "alice", Actor: "alice", Payload: events.UserCreatedV1{Username: "alice"}})
	f.add(events.Event{Entity: "alice", Project: "p", Actor: "alice", Payload: events.ProjectCreatedV1{Name: "p"}})
	return f
}

func (f *feeder) add(evs ...events.Event) {
	f.t.Helper()
	recs := make([]projections.Record, len(evs))
	for i, e := range evs {
		f.seq++
		e.ID = events.NewID(t0)
		e.Type = e.Payload.EventType()
		e.Version = 1
		if e.Actor == "" {
			e.Actor = "alice"
		}
		if e.Time.IsZero() {
			e.Time = t0
		}
		recs[i] = projections.Record{Seq: f.seq, Event: e}
	}
	if err := f.s.Apply(recs); err != nil {
		f.t.Fatal(err)
	}
}

func (f *feeder) start(run string, pl events.RunStartedV1) {
	pl.RunID = run
	if pl.Name == "" {
		pl.Name = run
	}
	f.add(events.Event{Entity: "alice", Project: "p", Run: run, Payload: pl})
}

// logPoints logs points of metric "m" (and "other" every third step) in
// batches of random sizes up to maxBatch.
func (f *feeder) logPoints(run string, pts []projections.Point, rng *rand.Rand, maxBatch int) {
	for len(pts) > 0 {
		n := min(len(pts), 1+rng.IntN(maxBatch))
		rows := make([]events.Row, n)
		for i, p := range pts[:n] {
			rows[i] = events.Row{Step: p.Step, Time: p.Time, Values: map[string]events.Value{"m": p.Value}}
			if p.Step%3 == 0 {
				rows[i].Values["other"] = events.Value(p.Step)
			}
		}
		f.add(events.Event{Entity: "alice", Project: "p", Run: run, Payload: events.MustRows(rows)})
		pts = pts[n:]
	}
}

// randomSeries has gaps between steps and a few NaN and infinite values.
func randomSeries(rng *rand.Rand, n int) []projections.Point {
	pts := make([]projections.Point, n)
	step := int64(rng.IntN(5))
	for i := range pts {
		v := rng.NormFloat64()
		switch rng.IntN(50) {
		case 0:
			v = math.NaN()
		case 1:
			v = math.Inf(1 - 2*rng.IntN(2))
		}
		pts[i] = projections.Point{Step: step, Time: 1795779452 + float64(step)/8, Value: events.Value(v)}
		step += 1 + int64(rng.IntN(3))*int64(rng.IntN(2))
	}
	return pts
}

// bruteDownsample is the reference: every point, one at a time.
func bruteDownsample(pts []projections.Point, lo, hi int64, n int) []projections.Bucket {
	if len(pts) == 0 {
		return []projections.Bucket{}
	}
	if lo < pts[0].Step {
		lo = pts[0].Step
	}
	if hi < 0 || hi > pts[len(pts)-1].Step {
		hi = pts[len(pts)-1].Step
	}
	out := []projections.Bucket{}
	if hi < lo {
		return out
	}
	width := (hi - lo + int64(n)) / int64(n)
	byBucket := map[int64]*projections.Bucket{}
	var order []int64
	for _, p := range pts {
		if p.Step < lo || p.Step > hi {
			continue
		}
		b := (p.Step - lo) / width
		bk := byBucket[b]
		if bk == nil {
			bk = &projections.Bucket{Start: lo + b*width, End: min(lo+b*width+width-1, hi), Min: events.Value(math.NaN()), Max: events.Value(math.NaN())}
			byBucket[b] = bk
			order = append(order, b)
		}
		v := float64(p.Value)
		if !math.IsNaN(v) {
			if math.IsNaN(float64(bk.Min)) || v < float64(bk.Min) {
				bk.Min = p.Value
			}
			if math.IsNaN(float64(bk.Max)) || v > float64(bk.Max) {
				bk.Max = p.Value
			}
		}
		bk.Count++
		bk.Step, bk.Time, bk.Last = p.Step, p.Time, p.Value
	}
	for _, b := range order {
		out = append(out, *byBucket[b])
	}
	return out
}

func sameFloat(a, b events.Value) bool {
	return a == b || math.IsNaN(float64(a)) && math.IsNaN(float64(b))
}

func TestDownsampleMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := openStore(t)
	f.start("r", events.RunStartedV1{})
	pts := randomSeries(rng, 20_000)
	f.logPoints("r", pts, rng, 3000)
	last := pts[len(pts)-1].Step
	cases := [][3]int64{{0, -1, 1000}, {0, -1, 1}, {0, -1, 7}, {0, -1, 100_000}, {17, 5000, 10}, {1000, 1000, 3}, {5, 9000, 333}, {last + 1, -1, 10}, {0, last / 2, 64}}
	for i := 0; i < 30; i++ {
		lo := rng.Int64N(last)
		cases = append(cases, [3]int64{lo, lo + rng.Int64N(last-lo+1), 1 + rng.Int64N(2000)})
	}
	for _, c := range cases {
		got, err := f.s.Downsample("alice", "p", "r", "m", c[0], c[1], int(c[2]))
		if err != nil {
			t.Fatal(err)
		}
		want := bruteDownsample(pts, c[0], c[1], int(c[2]))
		if len(got) != len(want) {
			t.Fatalf("range %v: %d buckets, want %d", c, len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Start != w.Start || g.End != w.End || g.Count != w.Count || g.Step != w.Step || g.Time != w.Time ||
				!sameFloat(g.Min, w.Min) || !sameFloat(g.Max, w.Max) || !sameFloat(g.Last, w.Last) {
				t.Fatalf("range %v bucket %d: %+v, want %+v", c, i, g, w)
			}
		}
	}
	if got, _ := f.s.Downsample("alice", "p", "r", "nope", 0, -1, 10); len(got) != 0 {
		t.Fatalf("unknown metric: %+v", got)
	}
}

// TestChunksDoNotDependOnBatches: the same points logged in tiny or large
// batches give the same history keys and values (a replay gives the same
// read model), and every chunk but the last is full.
func TestChunksDoNotDependOnBatches(t *testing.T) {
	pts := randomSeries(rand.New(rand.NewPCG(3, 4)), 5000)
	dump := func(maxBatch int) map[string]string {
		f := openStore(t)
		f.start("r", events.RunStartedV1{})
		f.logPoints("r", pts, rand.New(rand.NewPCG(uint64(maxBatch), 9)), maxBatch)
		kv := map[string]string{}
		err := f.s.DB().View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte("hist/")
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				v, _ := it.Item().ValueCopy(nil)
				kv[string(it.Item().Key())] = string(v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	tiny, large := dump(3), dump(4000)
	if len(tiny) != len(large) {
		t.Fatalf("%d chunks from tiny batches, %d from large ones", len(tiny), len(large))
	}
	for k, v := range tiny {
		if large[k] != v {
			t.Fatalf("chunk %q differs", k)
		}
	}
	// "m" has 5000 points: 4 full chunks and one of 904.
	n := 0
	for k := range tiny {
		if strings.Contains(k, "\x00m\x00") {
			n++
		}
	}
	if n != (5000+projections.ChunkPoints-1)/projections.ChunkPoints {
		t.Fatalf("metric m has %d chunks", n)
	}
}

func TestHistoryRangeIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	f := openStore(t)
	f.start("r", events.RunStartedV1{})
	pts := randomSeries(rng, 4000)
	f.logPoints("r", pts, rng, 500)
	for i := 0; i < 50; i++ {
		lo := rng.Int64N(pts[len(pts)-1].Step)
		hi := lo + rng.Int64N(3000)
		var got []projections.Point
		err := f.s.History("alice", "p", "r", projections.HistoryRange{Metric: "m", MinStep: lo, MaxStep: hi}, func(p projections.Point) bool {
			got = append(got, p)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []projections.Point
		for _, p := range pts {
			if p.Step >= lo && p.Step <= hi {
				want = append(want, p)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("[%d,%d]: %d points, want %d", lo, hi, len(got), len(want))
		}
		for j := range got {
			if got[j].Step != want[j].Step || !sameFloat(got[j].Value, want[j].Value) {
				t.Fatalf("[%d,%d] point %d: %+v, want %+v", lo, hi, j, got[j], want[j])
			}
		}
	}
}

func TestExport(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	f := openStore(t)
	f.start("r", events.RunStartedV1{})
	pts := randomSeries(rng, 3000)
	f.logPoints("r", pts, rng, 700)

	// NDJSON: every step once, with m and (every third step) other.
	var buf bytes.Buffer
	res, err := f.s.Export("alice", "p", "r", projections.ExportOptions{}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != int64(len(pts)) || res.More {
		t.Fatalf("export result %+v, want %d rows", res, len(pts))
	}
	sc := bufio.NewScanner(&buf)
	i := 0
	for sc.Scan() {
		var row struct {
			Step   int64                   `json:"step"`
			Time   float64                 `json:"time"`
			Values map[string]events.Value `json:"values"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("line %d %q: %v", i, sc.Text(), err)
		}
		p := pts[i]
		if row.Step != p.Step || math.Abs(row.Time-p.Time) > 1e-6 || !sameFloat(row.Values["m"], p.Value) {
			t.Fatalf("line %d: %s, want %+v", i, sc.Text(), p)
		}
		if _, has := row.Values["other"]; has != (p.Step%3 == 0) {
			t.Fatalf("line %d: %s: other present=%v", i, sc.Text(), has)
		}
		i++
	}
	if i != len(pts) {
		t.Fatalf("%d lines, want %d", i, len(pts))
	}

	// CSV in pages: the pages concatenate to the whole export.
	var whole, paged bytes.Buffer
	if _, err := f.s.Export("alice", "p", "r", projections.ExportOptions{Format: "csv", Header: true}, &whole); err != nil {
		t.Fatal(err)
	}
	o := projections.ExportOptions{Format: "csv", Header: true, MaxBytes: 10_000}
	pages := 0
	for {
		res, err := f.s.Export("alice", "p", "r", o, &paged)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if !res.More {
			break
		}
		o.From, o.Header = res.Next, false
	}
	if pages < 5 || whole.String() != paged.String() {
		t.Fatalf("%d pages; paged export equal to the whole: %v", pages, whole.String() == paged.String())
	}
	lines := strings.Split(strings.TrimSpace(whole.String()), "\n")
	if lines[0] != "step,time,m,other" || len(lines) != len(pts)+1 {
		t.Fatalf("csv header %q, %d lines", lines[0], len(lines))
	}
	cells := strings.Split(lines[2], ",")
	if cells[0] != strconv.FormatInt(pts[1].Step, 10) || cells[2] != fmt.Sprint(float64(pts[1].Value)) && !math.IsNaN(float64(pts[1].Value)) {
		t.Fatalf("csv line %q, want point %+v", lines[2], pts[1])
	}
	// One metric only, from a step.
	buf.Reset()
	res, _ = f.s.Export("alice", "p", "r", projections.ExportOptions{Metrics: []string{"other"}, From: pts[100].Step, Format: "csv", Header: true}, &buf)
	want := 0
	for _, p := range pts[100:] {
		if p.Step%3 == 0 {
			want++
		}
	}
	if res.Rows != int64(want) {
		t.Fatalf("export of other from step %d: %d rows, want %d", pts[100].Step, res.Rows, want)
	}
}
