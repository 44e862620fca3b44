package events

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MetricsLoggedV2 is a batch of history rows of one run in columns: the
// steps, the times, then one column of values per metric key. Version 1
// held a map per row, parsed from text at every hop; a batch of version 2 is
// decided from its header (rows, first and last step, keys) and folded
// column by column without a map per point.
//
// Its JSON is a small header plus the columns in base64 (standard
// alphabet, padded):
//
//	{"rows":N,"first":S0,"last":Sn,"keys":["acc","loss"],"cols":"<base64>"}
//
// keys are sorted and unique. The binary columns, little endian:
//
//	steps   varint(S0), then N-1 uvarint deltas, each >= 1 (steps
//	        strictly increase; first and last repeat S0 and Sn)
//	times   N float64 (Unix seconds), finite
//	per key, in keys order:
//	        a flag byte: 0 = a value in every row;
//	                     1 = a presence bitmap of ceil(N/8) bytes follows
//	                     (row i is bit i%8 of byte i/8; padding bits 0;
//	                     at least one row present)
//	        then one float64 per present row, in row order; NaN and
//	        ±Inf are ordinary bit patterns.
//
// Encoders write flag 0 whenever a column is full (decoders also accept a
// full bitmap). Nothing follows the last column. An empty batch is
// {"rows":0,"first":0,"last":0,"keys":[],"cols":""}.
//
// Decoding checks the structure only (lengths, step order, finite times,
// key order and UTF-8): the policy checks names and limits (keys with
// ValidateMetricKey, steps with ValidateStep), so that a key a past policy
// accepted still decodes. A decoded batch keeps its binary columns: an
// unchanged batch re-encodes by copying them.
type MetricsLoggedV2 struct {
	rows        int
	first, last int64
	keys        []string
	bin         []byte   // the binary columns, validated
	times       int      // offset of the times in bin
	cols        []column // where each key's column is in bin
}

// column locates one key's column in the binary.
type column struct {
	bitmap int // offset of the presence bitmap, -1 when every row has a value
	values int // offset of the first value
	count  int // number of values
}

func (MetricsLoggedV2) EventType() Type { return MetricsLogged }

// Len returns the number of rows.
func (m MetricsLoggedV2) Len() int { return m.rows }

// First and Last return the first and last step (0 for an empty batch).
func (m MetricsLoggedV2) First() int64 { return m.first }
func (m MetricsLoggedV2) Last() int64  { return m.last }

// Keys returns the metric keys, sorted; the caller must not change them.
func (m MetricsLoggedV2) Keys() []string { return m.keys }

// Columns returns the binary columns; the caller must not change them.
func (m MetricsLoggedV2) Columns() []byte { return m.bin }

// Points returns the number of values in the batch.
func (m MetricsLoggedV2) Points() int {
	n := 0
	for _, c := range m.cols {
		n += c.count
	}
	return n
}

// Steps appends the steps of the rows to dst.
func (m MetricsLoggedV2) Steps(dst []int64) []int64 {
	if m.rows == 0 {
		return dst
	}
	s, i := binary.Varint(m.bin)
	dst = append(dst, s)
	for r := 1; r < m.rows; r++ {
		d, n := binary.Uvarint(m.bin[i:])
		i += n
		s += int64(d)
		dst = append(dst, s)
	}
	return dst
}

// Time returns the time of row i.
func (m MetricsLoggedV2) Time(i int) float64 { return f64(m.bin[m.times+8*i:]) }

// FillTimes gives the rows logged without a wall time (0) the time now,
// as the HTTP edge reads a JSON body's rows. It changes m's columns in
// place: m must own them (ParseBody's batches do).
func (m MetricsLoggedV2) FillTimes(now float64) {
	for r := 0; r < m.rows; r++ {
		if o := m.times + 8*r; f64(m.bin[o:]) == 0 {
			binary.LittleEndian.PutUint64(m.bin[o:], math.Float64bits(now))
		}
	}
}

// Column returns the column of keys[j].
func (m MetricsLoggedV2) Column(j int) Column {
	c := m.cols[j]
	col := Column{Key: m.keys[j], vals: m.bin[c.values : c.values+8*c.count]}
	if c.bitmap >= 0 {
		col.bits = m.bin[c.bitmap : c.bitmap+(m.rows+7)/8]
	}
	return col
}

// Column is one metric's values in a batch. Walk it with Present and Value:
//
//	for row, k := 0, 0; row < m.Len(); row++ {
//		if c.Present(row) { use(row, c.Value(k)); k++ }
//	}
type Column struct {
	Key  string
	bits []byte // nil when every row has a value
	vals []byte
}

// Count returns the number of values.
func (c Column) Count() int { return len(c.vals) / 8 }

// Present reports whether row has a value.
func (c Column) Present(row int) bool { return c.bits == nil || c.bits[row>>3]&(1<<(row&7)) != 0 }

// Value returns the k-th value of the column (in row order).
func (c Column) Value(k int) float64 { return f64(c.vals[8*k:]) }

func f64(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }

// RowWidths appends the number of values of each row to dst.
func (m MetricsLoggedV2) RowWidths(dst []int) []int {
	start := len(dst)
	dst = slices.Grow(dst, m.rows)[:start+m.rows]
	clear(dst[start:])
	for j := range m.cols {
		c := m.Column(j)
		for r := 0; r < m.rows; r++ {
			if c.Present(r) {
				dst[start+r]++
			}
		}
	}
	return dst
}

// Dense reports whether some column has a value in every row (then no row
// is empty).
func (m MetricsLoggedV2) Dense() bool {
	for _, c := range m.cols {
		if c.bitmap < 0 {
			return true
		}
	}
	return false
}

// Rows returns the batch as rows, for tests and tools (it allocates a map
// per row).
func (m MetricsLoggedV2) Rows() []Row {
	steps := m.Steps(nil)
	out := make([]Row, m.rows)
	for i := range out {
		out[i] = Row{Step: steps[i], Time: m.Time(i), Values: map[string]Value{}}
	}
	for j := range m.keys {
		c := m.Column(j)
		for r, k := 0, 0; r < m.rows; r++ {
			if c.Present(r) {
				out[r].Values[c.Key] = Value(c.Value(k))
				k++
			}
		}
	}
	return out
}

// After returns the rows whose step is after last, and how many rows it
// dropped. The kept rows' columns are rebuilt; a batch that keeps every
// row is returned as is (same bytes).
func (m MetricsLoggedV2) After(last int64) (kept MetricsLoggedV2, dropped int) {
	if m.rows == 0 || m.first > last {
		return m, 0
	}
	if m.last <= last {
		return MetricsLoggedV2{}, m.rows
	}
	steps := m.Steps(make([]int64, 0, m.rows))
	from, _ := slices.BinarySearch(steps, last+1)
	return m.slice(steps, from), from
}

// slice returns rows [from:] of m, whose steps are steps.
func (m MetricsLoggedV2) slice(steps []int64, from int) MetricsLoggedV2 {
	n := m.rows - from
	w := newWriter(len(m.bin))
	w.steps(steps[from:])
	w.bin = append(w.bin, m.bin[m.times+8*from:m.times+8*m.rows]...)
	var keys []string
	bitmap := make([]byte, (n+7)/8)
	for j := range m.keys {
		c := m.Column(j)
		skip := 0 // values of the dropped rows
		if c.bits == nil {
			skip = from
		} else {
			clear(bitmap)
			for r := 0; r < m.rows; r++ {
				switch {
				case !c.Present(r):
				case r < from:
					skip++
				default:
					bitmap[(r-from)>>3] |= 1 << ((r - from) & 7)
				}
			}
		}
		if skip == c.Count() {
			continue // no value left in this column
		}
		keys = append(keys, c.Key)
		w.column(n, c.bits != nil, bitmap, c.vals[8*skip:])
	}
	out, err := index(n, steps[from], steps[len(steps)-1], keys, w.bin)
	if err != nil {
		panic("events: slicing a valid batch: " + err.Error()) // a bug, not input
	}
	return out
}

// writer appends the binary columns.
type writer struct{ bin []byte }

func newWriter(size int) *writer { return &writer{bin: make([]byte, 0, size)} }

func (w *writer) steps(steps []int64) {
	if len(steps) == 0 {
		return
	}
	w.bin = binary.AppendVarint(w.bin, steps[0])
	for i := 1; i < len(steps); i++ {
		w.bin = binary.AppendUvarint(w.bin, uint64(steps[i]-steps[i-1]))
	}
}

func (w *writer) float(f float64) {
	w.bin = binary.LittleEndian.AppendUint64(w.bin, math.Float64bits(f))
}

// column appends one column of rows rows: vals are its values as bytes;
// sparse says bitmap tells which rows have one (else all do). A bitmap
// with every row set is written as a full column.
func (w *writer) column(rows int, sparse bool, bitmap []byte, vals []byte) {
	if sparse && len(vals)/8 < rows {
		w.bin = append(w.bin, 1)
		w.bin = append(w.bin, bitmap[:(rows+7)/8]...)
	} else {
		w.bin = append(w.bin, 0)
	}
	w.bin = append(w.bin, vals...)
}

// Errors of the columnar decoder.
var (
	errColumns   = errors.New("metrics columns")
	errTruncated = fmt.Errorf("%w: truncated", errColumns)
)

// index checks the binary columns of a batch against its header and
// returns the batch.
func index(rows int, first, last int64, keys []string, bin []byte) (MetricsLoggedV2, error) {
	m := MetricsLoggedV2{rows: rows, first: first, last: last, keys: keys, bin: bin}
	if err := checkKeys(keys); err != nil {
		return m, err
	}
	if rows == 0 {
		if first != 0 || last != 0 || len(keys) != 0 || len(bin) != 0 {
			return m, fmt.Errorf("%w: an empty batch has no steps, keys or columns", errColumns)
		}
		m.bin = nil // one spelling of the empty batch
		return m, nil
	}
	// Each row takes at least 9 bytes (a step and a time): a header that
	// lies about its rows allocates nothing.
	if rows < 0 || rows > len(bin)/9 {
		return m, fmt.Errorf("%w: %d rows do not fit in %d bytes", errColumns, rows, len(bin))
	}
	i, err := checkSteps(rows, first, last, bin)
	if err != nil {
		return m, err
	}
	m.times = i
	for r := 0; r < rows; r++ {
		if t := f64(bin[i+8*r:]); math.IsNaN(t) || math.IsInf(t, 0) {
			return m, fmt.Errorf("%w: row %d: time is not finite", errColumns, r)
		}
	}
	i += 8 * rows
	m.cols = make([]column, len(keys))
	for j := range keys {
		if i, err = checkColumn(&m.cols[j], rows, bin, i); err != nil {
			return m, fmt.Errorf("%w (key %q)", err, keys[j])
		}
	}
	if i != len(bin) {
		return m, fmt.Errorf("%w: %d bytes after the last column", errColumns, len(bin)-i)
	}
	return m, nil
}

// checkKeys: sorted, unique, non-empty UTF-8.
func checkKeys(keys []string) error {
	for j, k := range keys {
		if k == "" || !utf8.ValidString(k) {
			return fmt.Errorf("%w: key %d is empty or not UTF-8", errColumns, j)
		}
		if j > 0 && keys[j-1] >= k {
			return fmt.Errorf("%w: keys must be sorted and unique (%q after %q)", errColumns, k, keys[j-1])
		}
	}
	return nil
}

// checkSteps reads rows steps (strictly increasing, from first to last)
// and returns the offset after them.
func checkSteps(rows int, first, last int64, bin []byte) (int, error) {
	s, i := binary.Varint(bin)
	if i <= 0 {
		return 0, errTruncated
	}
	if s != first {
		return 0, fmt.Errorf("%w: first step is %d, the header says %d", errColumns, s, first)
	}
	for r := 1; r < rows; r++ {
		d, n := binary.Uvarint(bin[i:])
		if n <= 0 {
			return 0, errTruncated
		}
		i += n
		if d == 0 || d > uint64(math.MaxInt64-s) {
			return 0, fmt.Errorf("%w: row %d: steps must increase (delta %d after %d)", errColumns, r, d, s)
		}
		s += int64(d)
	}
	if s != last {
		return 0, fmt.Errorf("%w: last step is %d, the header says %d", errColumns, s, last)
	}
	if len(bin)-i < 8*rows {
		return 0, errTruncated
	}
	return i, nil
}

// checkColumn reads the column at bin[i:] into c and returns the offset
// after it.
func checkColumn(c *column, rows int, bin []byte, i int) (int, error) {
	if i >= len(bin) {
		return 0, errTruncated
	}
	flag := bin[i]
	i++
	c.bitmap, c.count = -1, rows
	switch flag {
	case 0:
	case 1:
		nb := (rows + 7) / 8
		if len(bin)-i < nb {
			return 0, errTruncated
		}
		c.bitmap, c.count = i, 0
		for _, b := range bin[i : i+nb] {
			c.count += bits.OnesCount8(b)
		}
		if pad := rows % 8; pad != 0 && bin[i+nb-1]>>pad != 0 {
			return 0, fmt.Errorf("%w: presence bitmap sets rows after the last", errColumns)
		}
		if c.count == 0 {
			return 0, fmt.Errorf("%w: a column without values", errColumns)
		}
		i += nb
	default:
		return 0, fmt.Errorf("%w: column flag %d", errColumns, flag)
	}
	if (len(bin)-i)/8 < c.count {
		return 0, errTruncated
	}
	c.values = i
	return i + 8*c.count, nil
}

// AppendJSON appends the JSON payload of m.
func (m MetricsLoggedV2) AppendJSON(b []byte) []byte {
	b = append(b, `{"rows":`...)
	b = strconv.AppendInt(b, int64(m.rows), 10)
	b = append(b, `,"first":`...)
	b = strconv.AppendInt(b, m.first, 10)
	b = append(b, `,"last":`...)
	b = strconv.AppendInt(b, m.last, 10)
	b = append(b, `,"keys":[`...)
	for j, k := range m.keys {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
	}
	b = append(b, `],"cols":"`...)
	b = base64.StdEncoding.AppendEncode(b, m.bin)
	return append(b, `"}`...)
}

// jsonSize is the length of m's JSON payload, give or take the keys'
// escapes.
func (m MetricsLoggedV2) jsonSize() int {
	n := 96 + base64.StdEncoding.EncodedLen(len(m.bin))
	for _, k := range m.keys {
		n += len(k) + 3
	}
	return n
}

// MarshalJSON implements json.Marshaler.
func (m MetricsLoggedV2) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, m.jsonSize())), nil
}

// UnmarshalJSON decodes and checks a payload.
func (m *MetricsLoggedV2) UnmarshalJSON(b []byte) error {
	p := parser{b: b}
	if v, ok := p.columns(); ok && p.end() {
		*m = v
		return nil
	}
	if p.err != nil {
		return p.err
	}
	// Outside the fast path's subset (escapes, spacing it does not take,
	// a missing field): encoding/json reads the header.
	var h struct {
		Rows  *int     `json:"rows"`
		First int64    `json:"first"`
		Last  int64    `json:"last"`
		Keys  []string `json:"keys"`
		Cols  string   `json:"cols"`
	}
	if err := strictJSON(b, &h); err != nil {
		return err
	}
	if h.Rows == nil {
		return fmt.Errorf("%w: no rows", errColumns)
	}
	v, err := decodeColumns(*h.Rows, h.First, h.Last, h.Keys, []byte(h.Cols))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the payload")
	}
	return nil
}

// decodeColumns decodes the base64 columns and checks the batch.
func decodeColumns(rows int, first, last int64, keys []string, b64 []byte) (MetricsLoggedV2, error) {
	bin := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Strict().Decode(bin, b64)
	if err != nil {
		return MetricsLoggedV2{}, fmt.Errorf("%w: %v", errColumns, err)
	}
	if keys == nil {
		keys = []string{}
	}
	return index(rows, first, last, keys, bin[:n])
}

// columns reads a version 2 payload on the fast path. ok is false when the
// input is outside its subset; p.err is set when the input is in it but
// not a valid batch.
func (p *parser) columns() (MetricsLoggedV2, bool) {
	var rows, first, last int64
	var keys []string
	var b64 []byte
	var seen uint8
	ok := p.object(func(k []byte) bool {
		var ok bool
		var bit uint8
		switch string(k) {
		case "rows":
			bit = 1
			rows, ok = p.int64()
		case "first":
			bit = 2
			first, ok = p.int64()
		case "last":
			bit = 4
			last, ok = p.int64()
		case "keys":
			bit = 8
			keys, ok = p.strings()
		case "cols":
			bit = 16
			b64, ok = p.str()
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
	if !ok || seen != 31 || rows < 0 || rows > math.MaxInt32 {
		return MetricsLoggedV2{}, false
	}
	m, err := decodeColumns(int(rows), first, last, keys, b64)
	if err != nil {
		p.err = err
		return MetricsLoggedV2{}, false
	}
	return m, true
}

// strings reads an array of strings.
func (p *parser) strings() ([]string, bool) {
	if !p.eat('[') {
		return nil, false
	}
	out := []string{}
	if p.eat(']') {
		return out, true
	}
	for {
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, string(s))
		if p.eat(',') {
			continue
		}
		return out, p.eat(']')
	}
}

// upcastMetricsV1: v1 {"rows":[{"step","time","values"}]} -> v2 columns.
func upcastMetricsV1(payload json.RawMessage) (json.RawMessage, error) {
	v1, ok := ParseMetricsPayload(payload)
	if !ok {
		if err := json.Unmarshal(payload, &v1); err != nil {
			return nil, err
		}
	}
	v2, err := FromRows(v1.Rows)
	if err != nil {
		return nil, err
	}
	return v2.MarshalJSON()
}

// FromRows builds a batch from rows (steps strictly increasing).
func FromRows(rows []Row) (MetricsLoggedV2, error) {
	var b Builder
	for _, r := range rows {
		b.Row(r.Step, r.Time)
		for k, v := range r.Values {
			b.Value(k, float64(v))
		}
	}
	return b.Build()
}
