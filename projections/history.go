package projections

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sort"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// History chunks. A metric's history is stored in chunks of up to
// ChunkPoints points, keyed by the step of their first point. The fold fills
// the last chunk before it starts a new one, whatever the batch sizes, so
// every chunk but the last holds exactly ChunkPoints points and the layout
// depends only on the points (a replay writes the same keys).
//
// A chunk is
//
//	n        uint32           number of points
//	blocks   ceil(n/64) x     min and max (float64 each, NaN ignored) of
//	                          each run of BlockPoints points
//	points   n x 24 bytes     step int64, time float64, value float64
//
// all big endian. Block summaries let a downsample take the min and max of
// whole blocks without visiting their points.
const (
	ChunkPoints = 1024
	BlockPoints = 64
	pointSize   = 24
)

// chunk is a decoded view of an encoded chunk (no copy).
type chunk struct {
	n      int
	blocks []byte
	pts    []byte
}

func parseChunk(b []byte) (chunk, error) {
	if len(b) < 4 {
		return chunk{}, errors.New("history chunk too short")
	}
	n := int(binary.BigEndian.Uint32(b))
	nb := (n + BlockPoints - 1) / BlockPoints
	if len(b) != 4+16*nb+pointSize*n {
		return chunk{}, errors.New("history chunk has the wrong length")
	}
	return chunk{n: n, blocks: b[4 : 4+16*nb], pts: b[4+16*nb:]}, nil
}

func (c chunk) step(i int) int64 { return int64(binary.BigEndian.Uint64(c.pts[i*pointSize:])) }
func (c chunk) time(i int) float64 {
	return math.Float64frombits(binary.BigEndian.Uint64(c.pts[i*pointSize+8:]))
}
func (c chunk) value(i int) float64 {
	return math.Float64frombits(binary.BigEndian.Uint64(c.pts[i*pointSize+16:]))
}
func (c chunk) point(i int) Point {
	return Point{Step: c.step(i), Time: c.time(i), Value: events.Value(c.value(i))}
}
func (c chunk) blockMinMax(b int) (float64, float64) {
	return math.Float64frombits(binary.BigEndian.Uint64(c.blocks[b*16:])),
		math.Float64frombits(binary.BigEndian.Uint64(c.blocks[b*16+8:]))
}

// search returns the first index in [lo, hi) whose step is >= step.
func (c chunk) search(lo, hi int, step int64) int {
	return lo + sort.Search(hi-lo, func(i int) bool { return c.step(lo+i) >= step })
}

// encodeChunk encodes points (steps increasing) as a chunk.
func encodeChunk(pts []Point) []byte {
	n := len(pts)
	nb := (n + BlockPoints - 1) / BlockPoints
	b := make([]byte, 4+16*nb, 4+16*nb+pointSize*n)
	binary.BigEndian.PutUint32(b, uint32(n))
	for blk := 0; blk < nb; blk++ {
		lo, hi := math.NaN(), math.NaN()
		for _, p := range pts[blk*BlockPoints : min(n, (blk+1)*BlockPoints)] {
			lo, hi = minMax(lo, hi, float64(p.Value))
		}
		binary.BigEndian.PutUint64(b[4+blk*16:], math.Float64bits(lo))
		binary.BigEndian.PutUint64(b[4+blk*16+8:], math.Float64bits(hi))
	}
	for _, p := range pts {
		b = binary.BigEndian.AppendUint64(b, uint64(p.Step))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(p.Time))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(p.Value)))
	}
	return b
}

// minMax folds v into a running min and max that ignore NaN (NaN until a
// number is seen).
func minMax(lo, hi, v float64) (float64, float64) {
	if math.IsNaN(v) {
		return lo, hi
	}
	if math.IsNaN(lo) || v < lo {
		lo = v
	}
	if math.IsNaN(hi) || v > hi {
		hi = v
	}
	return lo, hi
}

// decodeChunk calls fn for each point of an encoded chunk from the first
// with a step >= from, until fn returns false.
func decodeChunk(b []byte, from int64, fn func(Point) bool) (bool, error) {
	c, err := parseChunk(b)
	if err != nil {
		return false, err
	}
	for i := c.search(0, c.n, from); i < c.n; i++ {
		if !fn(c.point(i)) {
			return false, nil
		}
	}
	return true, nil
}

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
		var old []Point
		err = item.Value(func(v []byte) error {
			_, err := decodeChunk(v, math.MinInt64, func(p Point) bool { old = append(old, p); return true })
			return err
		})
		if err != nil {
			return err
		}
		// Points past the run document's count were written by an
		// overflow commit whose event is being folded again (see
		// maxCachedDocs): the chunk is rebuilt from the counted ones.
		old = old[:min(len(old), open)]
		take := min(ChunkPoints-len(old), len(pts))
		if err := f.set(key, encodeChunk(append(old, pts[:take]...))); err != nil {
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
// Whole blocks of a chunk are summarised from the chunk's block summaries.
func (s *Store) Downsample(entity, project, run, metric string, minStep, maxStep int64, n int) ([]Bucket, error) {
	if n <= 0 {
		return nil, errors.New("downsample needs at least one bucket")
	}
	prefix := histMetricPrefix(entity, project, run, metric)
	out := []Bucket{}
	err := s.db.View(func(txn *badger.Txn) error {
		first, last, ok, err := stepBounds(txn, prefix)
		if err != nil || !ok {
			return err
		}
		lo, hi := max(minStep, first), last
		if maxStep >= 0 {
			hi = min(maxStep, last)
		}
		if hi < lo {
			return nil
		}
		width := (hi - lo + int64(n)) / int64(n) // ceil((hi-lo+1)/n)
		cur := Bucket{Start: -1}
		flush := func() {
			if cur.Count > 0 {
				out = append(out, cur)
			}
		}
		return scanChunks(txn, prefix, lo, hi, func(c chunk) {
			i, end := c.search(0, c.n, lo), c.search(0, c.n, hi+1)
			for i < end {
				b := (c.step(i) - lo) / width
				bStart := lo + b*width
				bEnd := min(bStart+width-1, hi)
				j := c.search(i, end, bEnd+1) // points [i, j) are in bucket b
				if bStart != cur.Start {
					flush()
					cur = Bucket{Start: bStart, End: bEnd, Min: events.Value(math.NaN()), Max: events.Value(math.NaN())}
				}
				lo2, hi2 := c.rangeMinMax(i, j)
				mn, mx := minMax(float64(cur.Min), float64(cur.Max), lo2)
				mn, mx = minMax(mn, mx, hi2)
				cur.Min, cur.Max = events.Value(mn), events.Value(mx)
				cur.Count += int64(j - i)
				cur.Step, cur.Time, cur.Last = c.step(j-1), c.time(j-1), events.Value(c.value(j-1))
				i = j
			}
		}, flush)
	})
	return out, err
}

// rangeMinMax returns the min and max (NaN ignored) of points [i, j),
// using block summaries for whole blocks.
func (c chunk) rangeMinMax(i, j int) (float64, float64) {
	lo, hi := math.NaN(), math.NaN()
	for i < j {
		if i%BlockPoints == 0 && i+BlockPoints <= j {
			bl, bh := c.blockMinMax(i / BlockPoints)
			lo, hi = minMax(lo, hi, bl)
			lo, hi = minMax(lo, hi, bh)
			i += BlockPoints
			continue
		}
		lo, hi = minMax(lo, hi, c.value(i))
		i++
	}
	return lo, hi
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
		c, err := parseChunk(v)
		if err != nil || c.n == 0 {
			return err
		}
		last = c.step(c.n - 1)
		return nil
	})
	return first, last, true, err
}

// scanChunks calls fn for every chunk that may hold steps in [lo, hi], in
// step order, then done. The chunk is only valid during the call.
func scanChunks(txn *badger.Txn, prefix []byte, lo, hi int64, fn func(chunk), done func()) error {
	start := chunkStart(txn, prefix, lo)
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = prefix, false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		k := it.Item().Key()
		if int64(binary.BigEndian.Uint64(k[len(k)-8:])) > hi {
			break
		}
		err := it.Item().Value(func(v []byte) error {
			c, err := parseChunk(v)
			if err != nil {
				return err
			}
			fn(c)
			return nil
		})
		if err != nil {
			return err
		}
	}
	done()
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
					t = c.c.time(c.i)
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
						buf = appendCSVValue(buf, c.c.value(c.i))
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
						buf = appendJSONValue(buf, c.c.value(c.i))
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

// metricCursor walks one metric's points in step order.
type metricCursor struct {
	it  *badger.Iterator
	buf []byte
	c   chunk
	i   int
	ok  bool
}

func newMetricCursor(txn *badger.Txn, prefix []byte, from int64) (*metricCursor, error) {
	start := chunkStart(txn, prefix, from)
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = prefix, false
	mc := &metricCursor{it: txn.NewIterator(opts)}
	mc.it.Seek(start)
	if err := mc.load(); err != nil {
		return mc, err
	}
	if mc.ok {
		mc.i = mc.c.search(0, mc.c.n, from)
		if mc.i >= mc.c.n {
			mc.i--
			return mc, mc.next()
		}
	}
	return mc, nil
}

// load reads the chunk under the iterator.
func (m *metricCursor) load() error {
	for m.it.Valid() {
		var err error
		if m.buf, err = m.it.Item().ValueCopy(m.buf[:0]); err != nil {
			return err
		}
		if m.c, err = parseChunk(m.buf); err != nil {
			return err
		}
		m.i = 0
		if m.c.n > 0 {
			m.ok = true
			return nil
		}
		m.it.Next()
	}
	m.ok = false
	return nil
}

func (m *metricCursor) step() int64 { return m.c.step(m.i) }

func (m *metricCursor) next() error {
	m.i++
	if m.i < m.c.n {
		return nil
	}
	m.it.Next()
	return m.load()
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
