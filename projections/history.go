package projections

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// appendHistory adds points (steps increasing, after every stored step) to a
// metric's history: first filling the metric's last chunk, then in new
// chunks of ChunkPoints. m.Count (before the points) and m.ChunkStep
// locate the last chunk; both are updated.
func (f *fold) appendHistory(prefix []byte, m *MetricSummary, pts []Point) error {
	if open := int(m.Count % ChunkPoints); open > 0 && m.Count > 0 {
		key := stepKey(prefix, m.ChunkStep)
		item, err := f.txn.Get(key)
		if err != nil {
			return err
		}
		var enc chunkEncoder
		var take int
		err = item.Value(func(v []byte) error {
			var c chunk
			if err := c.parse(v); err != nil {
				return err
			}
			// Points past the run document's count were written by an
			// overflow commit whose event is being folded again (see
			// maxCachedDocs): the chunk is rebuilt from the counted ones.
			// Its whole blocks are kept as they are; the points of a
			// partial last block are encoded again with the new ones.
			tail, err := enc.extend(&c, open, make([]Point, 0, BlockPoints+len(pts)))
			if err != nil {
				return err
			}
			take = min(ChunkPoints-enc.n-len(tail), len(pts))
			enc.add(append(tail, pts[:take]...))
			return nil
		})
		if err != nil {
			return err
		}
		if err := f.set(key, enc.bytes()); err != nil {
			return err
		}
		m.Count += int64(take)
		pts = pts[take:]
	}
	for len(pts) > 0 {
		take := min(ChunkPoints, len(pts))
		if err := f.set(stepKey(prefix, pts[0].Step), encodeChunk(pts[:take])); err != nil {
			return err
		}
		m.ChunkStep = pts[0].Step
		m.Count += int64(take)
		pts = pts[take:]
	}
	return nil
}

// Bucket is one bucket of a downsampled series: the points with steps in
// [Start, End], their count, min and max (NaN ignored) and the last one.
type Bucket struct {
	Start int64        `json:"start"`
	End   int64        `json:"end"`
	Count int64        `json:"count"`
	Step  int64        `json:"step"` // step of the last point
	Time  float64      `json:"time"` // its wall time
	Min   events.Value `json:"min"`
	Max   events.Value `json:"max"`
	Last  events.Value `json:"last"`
}

// Downsample splits the steps [minStep, maxStep] of a run's metric into n
// buckets of equal width (the last may be narrower) and summarises each
// (as W&B's charts do). maxStep < 0 means up to the last logged step;
// minStep <= 0 starts at the first logged step. Empty buckets are left out.
// Blocks of a chunk that fall in one bucket are summarised from the
// chunk's header, without decoding their points.
func (s *Store) Downsample(entity, project, run, metric string, minStep, maxStep int64, n int) ([]Bucket, error) {
	if n <= 0 {
		return nil, errors.New("downsample needs at least one bucket")
	}
	prefix := histMetricPrefix(entity, project, run, metric)
	d := downsampler{out: []Bucket{}, cur: Bucket{Start: -1}}
	err := s.db.View(func(txn *badger.Txn) error {
		first, last, ok, err := stepBounds(txn, prefix)
		if err != nil || !ok {
			return err
		}
		d.lo, d.hi = max(minStep, first), last
		if maxStep >= 0 {
			d.hi = min(maxStep, last)
		}
		if d.hi < d.lo {
			return nil
		}
		d.width = (d.hi - d.lo + int64(n)) / int64(n) // ceil((hi-lo+1)/n)
		if err := scanChunks(txn, prefix, d.lo, d.hi, d.chunk); err != nil {
			return err
		}
		d.flush()
		return nil
	})
	return d.out, err
}

// downsampler builds the buckets of a Downsample, chunk after chunk.
type downsampler struct {
	lo, hi, width int64
	cur           Bucket
	out           []Bucket
	pts           []Point // decoded block (reused)
}

func (d *downsampler) bucket(step int64) int64 { return (step - d.lo) / d.width }

// enter makes the bucket of step the current one.
func (d *downsampler) enter(step int64) {
	start := d.lo + d.bucket(step)*d.width
	if start != d.cur.Start {
		d.flush()
		nan := events.Value(math.NaN())
		d.cur = Bucket{Start: start, End: min(start+d.width-1, d.hi), Min: nan, Max: nan}
	}
}

func (d *downsampler) flush() {
	if d.cur.Count > 0 {
		d.out = append(d.out, d.cur)
	}
}

// merge adds n points with the min and max lo, hi to the current bucket.
func (d *downsampler) merge(lo, hi float64, n int) {
	mn, mx := minMax(float64(d.cur.Min), float64(d.cur.Max), lo)
	mn, mx = minMax(mn, mx, hi)
	d.cur.Min, d.cur.Max = events.Value(mn), events.Value(mx)
	d.cur.Count += int64(n)
}

func (d *downsampler) setLast(p Point) { d.cur.Step, d.cur.Time, d.cur.Last = p.Step, p.Time, p.Value }

// chunk adds a chunk's points in [lo, hi].
func (d *downsampler) chunk(c *chunk) error {
	for i := 0; i < c.nb; i++ {
		blk := &c.blocks[i]
		if blk.last < d.lo || blk.first > d.hi {
			continue
		}
		if blk.first >= d.lo && blk.last <= d.hi && d.bucket(blk.first) == d.bucket(blk.last) {
			if err := d.wholeBlock(c, i); err != nil {
				return err
			}
			continue
		}
		var err error
		if d.pts, err = c.block(i, d.pts[:0]); err != nil {
			return err
		}
		d.points(d.pts)
	}
	return nil
}

// wholeBlock adds a block that lies in one bucket from its summary. Its
// last point is decoded only when no later block of the chunk goes on with
// the bucket (and so would replace it).
func (d *downsampler) wholeBlock(c *chunk, i int) error {
	blk := &c.blocks[i]
	d.enter(blk.first)
	d.merge(blk.min, blk.max, blk.n)
	if i+1 < c.nb && c.blocks[i+1].first <= d.cur.End {
		return nil
	}
	var err error
	if d.pts, err = c.block(i, d.pts[:0]); err != nil {
		return err
	}
	d.setLast(d.pts[len(d.pts)-1])
	return nil
}

// points adds the points of pts (steps increasing) in [lo, hi].
func (d *downsampler) points(pts []Point) {
	pts = pts[searchPoints(pts, d.lo):searchPoints(pts, d.hi+1)]
	for len(pts) > 0 {
		d.enter(pts[0].Step)
		j := searchPoints(pts, d.cur.End+1) // pts[:j] are in the bucket
		lo, hi := math.NaN(), math.NaN()
		for _, p := range pts[:j] {
			lo, hi = minMax(lo, hi, float64(p.Value))
		}
		d.merge(lo, hi, j)
		d.setLast(pts[j-1])
		pts = pts[j:]
	}
}

// stepBounds returns the first and last step of a metric's history.
func stepBounds(txn *badger.Txn, prefix []byte) (first, last int64, ok bool, err error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = prefix, false
	it := txn.NewIterator(opts)
	it.Rewind()
	if !it.Valid() {
		it.Close()
		return 0, 0, false, nil
	}
	k := it.Item().Key()
	first = int64(binary.BigEndian.Uint64(k[len(k)-8:]))
	it.Close()
	opts.Reverse = true
	rit := txn.NewIterator(opts)
	defer rit.Close()
	rit.Seek(stepKey(prefix, math.MaxInt64))
	if !rit.Valid() {
		return 0, 0, false, nil
	}
	err = rit.Item().Value(func(v []byte) error {
		var c chunk
		if err := c.parse(v); err != nil || c.n == 0 {
			return err
		}
		last = c.blocks[c.nb-1].last
		return nil
	})
	return first, last, true, err
}

// scanChunks calls fn for every chunk that may hold steps in [lo, hi], in
// step order, until fn returns an error. The chunk is only valid during the
// call.
func scanChunks(txn *badger.Txn, prefix []byte, lo, hi int64, fn func(*chunk) error) error {
	start := chunkStart(txn, prefix, lo)
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = prefix, false
	it := txn.NewIterator(opts)
	defer it.Close()
	var c chunk
	for it.Seek(start); it.Valid(); it.Next() {
		k := it.Item().Key()
		if int64(binary.BigEndian.Uint64(k[len(k)-8:])) > hi {
			break
		}
		err := it.Item().Value(func(v []byte) error {
			if err := c.parse(v); err != nil {
				return err
			}
			return fn(&c)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ExportOptions select what Export writes.
type ExportOptions struct {
	// Metrics to export; empty for every metric of the run.
	Metrics []string
	// From is the first step to export.
	From int64
	// Format is "ndjson" (default) or "csv".
	Format string
	// Header writes the CSV header line (the first page of an export).
	Header bool
	// MaxBytes stops after the row that takes the output past this many
	// bytes (0: no limit), for paged exports.
	MaxBytes int
}

// ExportResult says where a paged export stopped.
type ExportResult struct {
	Rows int64 `json:"rows"`
	// More is set when MaxBytes stopped the export before the end; Next is
	// then the step to continue from.
	More bool  `json:"more"`
	Next int64 `json:"next"`
}

// Export streams a run's history as rows merged by step across metrics:
// NDJSON lines {"step":..,"time":..,"values":{..}} (non-finite values as
// the strings "NaN", "Infinity", "-Infinity") or CSV with a column per
// metric (empty where a metric has no value at a step). Wall times are
// written with microsecond precision. Rows are written through a 64 KiB
// buffer: memory does not grow with the history.
func (s *Store) Export(entity, project, run string, o ExportOptions, w io.Writer) (ExportResult, error) {
	metrics := o.Metrics
	if len(metrics) == 0 {
		var err error
		if metrics, err = s.Metrics(entity, project, run); err != nil {
			return ExportResult{}, err
		}
	}
	csv := o.Format == "csv"
	var res ExportResult
	err := s.db.View(func(txn *badger.Txn) error {
		curs := make([]*metricCursor, 0, len(metrics))
		defer func() {
			for _, c := range curs {
				c.it.Close()
			}
		}()
		names := make([][]byte, len(metrics))
		for i, m := range metrics {
			c, err := newMetricCursor(txn, histMetricPrefix(entity, project, run, m), o.From)
			if err != nil {
				return err
			}
			curs = append(curs, c)
			if csv {
				names[i] = csvField(m)
			} else {
				names[i] = append(strconv.AppendQuote(nil, m), ':')
			}
		}
		buf := make([]byte, 0, 80<<10)
		written := 0
		if csv && o.Header {
			buf = append(buf, "step,time"...)
			for _, n := range names {
				buf = append(buf, ',')
				buf = append(buf, n...)
			}
			buf = append(buf, '\n')
		}
		for {
			step := int64(math.MaxInt64)
			for _, c := range curs {
				if c.ok && c.step() < step {
					step = c.step()
				}
			}
			if step == math.MaxInt64 {
				break
			}
			if o.MaxBytes > 0 && written+len(buf) >= o.MaxBytes {
				res.More, res.Next = true, step
				break
			}
			var t float64
			for _, c := range curs {
				if c.ok && c.step() == step {
					t = c.pts[c.i].Time
					break
				}
			}
			if csv {
				buf = strconv.AppendInt(buf, step, 10)
				buf = append(buf, ',')
				buf = appendTime(buf, t)
				for _, c := range curs {
					buf = append(buf, ',')
					if c.ok && c.step() == step {
						buf = appendCSVValue(buf, float64(c.pts[c.i].Value))
						if err := c.next(); err != nil {
							return err
						}
					}
				}
			} else {
				buf = append(buf, `{"step":`...)
				buf = strconv.AppendInt(buf, step, 10)
				buf = append(buf, `,"time":`...)
				buf = appendTime(buf, t)
				buf = append(buf, `,"values":{`...)
				sep := false
				for i, c := range curs {
					if c.ok && c.step() == step {
						if sep {
							buf = append(buf, ',')
						}
						sep = true
						buf = append(buf, names[i]...)
						buf = appendJSONValue(buf, float64(c.pts[c.i].Value))
						if err := c.next(); err != nil {
							return err
						}
					}
				}
				buf = append(buf, "}}"...)
			}
			buf = append(buf, '\n')
			res.Rows++
			if len(buf) >= 64<<10 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				written += len(buf)
				buf = buf[:0]
			}
		}
		_, err := w.Write(buf)
		return err
	})
	return res, err
}

// metricCursor walks one metric's points in step order, a decoded chunk
// at a time.
type metricCursor struct {
	it  *badger.Iterator
	c   chunk
	pts []Point // the current chunk's points from the cursor's start on
	i   int
	ok  bool
}

func newMetricCursor(txn *badger.Txn, prefix []byte, from int64) (*metricCursor, error) {
	start := chunkStart(txn, prefix, from)
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = prefix, false
	mc := &metricCursor{it: txn.NewIterator(opts), pts: make([]Point, 0, ChunkPoints)}
	mc.it.Seek(start)
	return mc, mc.load(from)
}

// load decodes the points with steps >= from of the first chunk under the
// iterator that has some.
func (m *metricCursor) load(from int64) error {
	for ; m.it.Valid(); m.it.Next() {
		err := m.it.Item().Value(func(v []byte) error {
			if err := m.c.parse(v); err != nil {
				return err
			}
			var err error
			m.pts, err = m.c.points(from, m.pts[:0])
			return err
		})
		if err != nil {
			return err
		}
		m.i = 0
		if len(m.pts) > 0 {
			m.ok = true
			return nil
		}
	}
	m.ok = false
	return nil
}

func (m *metricCursor) step() int64 { return m.pts[m.i].Step }

func (m *metricCursor) next() error {
	m.i++
	if m.i < len(m.pts) {
		return nil
	}
	m.it.Next()
	return m.load(math.MinInt64)
}

// appendTime writes Unix seconds with up to six decimals (microseconds).
func appendTime(b []byte, t float64) []byte {
	if math.IsNaN(t) || math.IsInf(t, 0) || math.Abs(t) > 1e12 {
		return strconv.AppendFloat(b, t, 'g', -1, 64)
	}
	us := int64(math.Round(t * 1e6))
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	frac := us % 1e6
	if frac == 0 {
		return b
	}
	var d [7]byte
	d[0] = '.'
	for i := 6; i >= 1; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 7
	for d[n-1] == '0' {
		n--
	}
	return append(b, d[:n]...)
}

func appendJSONValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendCSVValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "Infinity"...)
	case math.IsInf(v, -1):
		return append(b, "-Infinity"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// csvField quotes a CSV field when it needs it (RFC 4180).
func csvField(s string) []byte {
	need := false
	for _, r := range s {
		if r == ',' || r == '"' || r == '\n' || r == '\r' {
			need = true
			break
		}
	}
	if !need {
		return []byte(s)
	}
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// chunkStart returns the key to start a forward scan of a metric's chunks
// at so that step is included: the last chunk whose first step is <= step
// (chunks are keyed by their first step), or step's own key if none is.
func chunkStart(txn *badger.Txn, prefix []byte, step int64) []byte {
	start := stepKey(prefix, step)
	rev := badger.DefaultIteratorOptions
	rev.Prefix, rev.Reverse, rev.PrefetchValues = prefix, true, false
	rit := txn.NewIterator(rev)
	defer rit.Close()
	rit.Seek(start)
	if rit.Valid() {
		return rit.Item().KeyCopy(nil)
	}
	return start
}
