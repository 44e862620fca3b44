package events

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Builder builds a MetricsLoggedV2 row by row without a map per row: Row
// starts a row, Value adds one of its values, Build returns the batch. A
// row usually logs the keys of the row before in the same order, so a key
// is first looked for where the previous row had it; the map of keys is
// only consulted when that guess fails.
//
// Errors (steps that do not increase, an empty or non-UTF-8 key, a time
// that is not finite: what the columns cannot hold) are kept and returned
// by Build. Names and limits are the policy's (ValidateMetricKey,
// ValidateStep), as for any proposal.
type Builder struct {
	steps []int64
	times []float64
	cols  []builderColumn
	index map[string]int
	prev  []int // columns of the previous row's values, in order
	cur   []int // columns of this row's values so far
	err   error
}

type builderColumn struct {
	key     string
	bits    []byte // presence bitmap, up to the last row with a value
	vals    []byte // float64 little endian
	lastRow int
}

// Rows returns the number of rows started.
func (b *Builder) Rows() int { return len(b.steps) }

// Row starts a row.
func (b *Builder) Row(step int64, time float64) {
	r := len(b.steps)
	if b.err == nil && r > 0 && step <= b.steps[r-1] {
		b.err = fmt.Errorf("row %d: steps must increase within a batch (%d after %d)", r, step, b.steps[r-1])
	}
	b.steps = append(b.steps, step)
	b.times = append(b.times, time)
	b.prev, b.cur = b.cur, b.prev[:0]
}

// SetTime sets the time of the current row.
func (b *Builder) SetTime(time float64) {
	if n := len(b.times); n > 0 {
		b.times[n-1] = time
	}
}

// Value adds a value to the current row. A key given twice in a row keeps
// its last value (as a JSON object does).
func (b *Builder) Value(key string, v float64) {
	pos := len(b.cur)
	if pos < len(b.prev) && b.cols[b.prev[pos]].key == key {
		b.add(b.prev[pos], v)
		return
	}
	j, ok := b.index[key]
	if !ok {
		j = b.newColumn(strings.Clone(key))
	}
	b.add(j, v)
}

// ValueBytes is Value with the key as bytes (not kept).
func (b *Builder) ValueBytes(key []byte, v float64) {
	pos := len(b.cur)
	if pos < len(b.prev) && b.cols[b.prev[pos]].key == string(key) {
		b.add(b.prev[pos], v)
		return
	}
	j, ok := b.index[string(key)]
	if !ok {
		j = b.newColumn(string(key))
	}
	b.add(j, v)
}

func (b *Builder) newColumn(key string) int {
	if (key == "" || !utf8.ValidString(key)) && b.err == nil {
		b.err = fmt.Errorf("row %d: a metric key must be non-empty UTF-8 (got %q)", len(b.steps)-1, key)
	}
	if b.index == nil {
		b.index = make(map[string]int, 32)
	}
	j := len(b.cols)
	b.index[key] = j
	if j < cap(b.cols) { // a column of a batch before Reset: reuse its memory
		b.cols = b.cols[:j+1]
		c := &b.cols[j]
		*c = builderColumn{key: key, bits: c.bits[:0], vals: c.vals[:0], lastRow: -1}
		return j
	}
	b.cols = append(b.cols, builderColumn{key: key, lastRow: -1})
	return j
}

func (b *Builder) add(j int, v float64) {
	row := len(b.steps) - 1
	if row < 0 {
		if b.err == nil {
			b.err = fmt.Errorf("a value before the first row")
		}
		return
	}
	c := &b.cols[j]
	if c.lastRow == row {
		binary.LittleEndian.PutUint64(c.vals[len(c.vals)-8:], math.Float64bits(v))
		return
	}
	c.lastRow = row
	for len(c.bits) <= row>>3 {
		c.bits = append(c.bits, 0)
	}
	c.bits[row>>3] |= 1 << (row & 7)
	c.vals = binary.LittleEndian.AppendUint64(c.vals, math.Float64bits(v))
	b.cur = append(b.cur, j)
}

// Build returns the batch built so far. The builder may be Reset and
// reused; the batch does not share its memory.
func (b *Builder) Build() (MetricsLoggedV2, error) {
	if b.err != nil {
		return MetricsLoggedV2{}, b.err
	}
	rows := len(b.steps)
	if rows == 0 {
		return index(0, 0, 0, []string{}, nil)
	}
	for r, t := range b.times {
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return MetricsLoggedV2{}, fmt.Errorf("row %d (step %d): time must be a finite number", r, b.steps[r])
		}
	}
	order := make([]int, len(b.cols))
	size := 18 * rows
	for j := range order {
		order[j] = j
		size += 1 + (rows+7)/8 + len(b.cols[j].vals)
	}
	slices.SortFunc(order, func(x, y int) int { return strings.Compare(b.cols[x].key, b.cols[y].key) })
	w := newWriter(size)
	w.steps(b.steps)
	for _, t := range b.times {
		w.float(t)
	}
	keys := make([]string, len(order))
	for i, j := range order {
		c := &b.cols[j]
		keys[i] = c.key
		for len(c.bits) < (rows+7)/8 {
			c.bits = append(c.bits, 0)
		}
		w.column(rows, true, c.bits, c.vals)
	}
	return index(rows, b.steps[0], b.steps[rows-1], keys, w.bin)
}

// Reset empties the builder, keeping its memory for the next batch.
func (b *Builder) Reset() {
	b.steps, b.times = b.steps[:0], b.times[:0]
	b.cols = b.cols[:0]
	clear(b.index)
	b.prev, b.cur = b.prev[:0], b.cur[:0]
	b.err = nil
}

// The binary body of the HTTP log API (Content-Type ColumnsMediaType): a
// batch without JSON or base64, as the Go client sends it:
//
//	uvarint(rows) uvarint(number of keys)
//	per key: uvarint(length) and its UTF-8 bytes (sorted, unique)
//	the binary columns (see MetricsLoggedV2)
//
// The first and last step are read from the columns.
const ColumnsMediaType = "application/vnd.logbook.columns"

// AppendBody appends the binary body of m.
func (m MetricsLoggedV2) AppendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(m.rows))
	b = binary.AppendUvarint(b, uint64(len(m.keys)))
	for _, k := range m.keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return append(b, m.bin...)
}

// ParseBody reads and checks a binary body. The batch keeps a copy of its
// columns, not body.
func ParseBody(body []byte) (MetricsLoggedV2, error) {
	rows, i := binary.Uvarint(body)
	if i <= 0 || rows > uint64(len(body)) {
		return MetricsLoggedV2{}, fmt.Errorf("%w: bad row count", errColumns)
	}
	nkeys, n := binary.Uvarint(body[i:])
	if n <= 0 || nkeys > uint64(len(body)) {
		return MetricsLoggedV2{}, fmt.Errorf("%w: bad key count", errColumns)
	}
	i += n
	keys := make([]string, 0, nkeys)
	for range nkeys {
		l, n := binary.Uvarint(body[i:])
		if n <= 0 || l > uint64(len(body)-i-n) {
			return MetricsLoggedV2{}, errTruncated
		}
		i += n
		keys = append(keys, string(body[i:i+int(l)]))
		i += int(l)
	}
	bin := slices.Clone(body[i:])
	first, last := stepRange(int(rows), bin)
	return index(int(rows), first, last, keys, bin)
}

// stepRange reads the first and last step of the columns as written,
// without checking them (index does).
func stepRange(rows int, bin []byte) (first, last int64) {
	if rows == 0 {
		return 0, 0
	}
	first, i := binary.Varint(bin)
	if i <= 0 {
		return 0, 0
	}
	last = first
	for r := 1; r < rows && i < len(bin); r++ {
		d, n := binary.Uvarint(bin[i:])
		if n <= 0 {
			break
		}
		i += n
		last += int64(d)
	}
	return first, last
}

// MustRows is FromRows for tests and tools: it panics on rows that are not
// a batch.
func MustRows(rows []Row) MetricsLoggedV2 {
	m, err := FromRows(rows)
	if err != nil {
		panic(err)
	}
	return m
}
