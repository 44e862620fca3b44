package events

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// sameRows compares rows, NaN equal to NaN (bit for bit).
func sameRows(a, b []Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Step != b[i].Step || a[i].Time != b[i].Time || len(a[i].Values) != len(b[i].Values) {
			return false
		}
		for k, v := range a[i].Values {
			w, ok := b[i].Values[k]
			if !ok || math.Float64bits(float64(v)) != math.Float64bits(float64(w)) {
				return false
			}
		}
	}
	return true
}

// withMaps gives rows without values an empty map, as Rows does.
func withMaps(rows []Row) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		out[i] = r
		if r.Values == nil {
			out[i].Values = map[string]Value{}
		}
	}
	return out
}

// TestColumnsRoundTrip: rows -> columns -> JSON and body -> columns -> rows
// is the identity, and the accessors agree with Rows.
func TestColumnsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for i := range 5000 {
		rows := randomRows(rng)
		m, err := FromRows(rows)
		if err != nil {
			t.Fatal(err)
		}
		if !sameRows(m.Rows(), withMaps(rows)) {
			t.Fatalf("case %d: rows %v came back as %v", i, rows, m.Rows())
		}
		js, _ := m.MarshalJSON()
		var back MetricsLoggedV2
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("case %d: %v: %s", i, err, js)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("case %d: JSON round trip differs: %s", i, js)
		}
		body, err := ParseBody(m.AppendBody(nil))
		if err != nil || !reflect.DeepEqual(body, m) {
			t.Fatalf("case %d: body round trip: %v", i, err)
		}
		points := 0
		for _, r := range rows {
			points += len(r.Values)
		}
		if m.Points() != points || m.Len() != len(rows) {
			t.Fatalf("case %d: %d points in %d rows, want %d in %d", i, m.Points(), m.Len(), points, len(rows))
		}
	}
}

// TestAfter: slicing off the rows up to a step gives what building the
// kept rows gives, byte for byte; keeping every row keeps the bytes.
func TestAfter(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	for i := range 5000 {
		rows := randomRows(rng)
		m, _ := FromRows(rows)
		last := int64(math.MinInt64)
		if len(rows) > 0 {
			last = rows[rng.IntN(len(rows))].Step - rng.Int64N(2)
		}
		var kept []Row
		for _, r := range rows {
			if r.Step > last {
				kept = append(kept, r)
			}
		}
		// Columns without values are dropped with their rows.
		want, _ := FromRows(kept)
		got, dropped := m.After(last)
		if dropped != len(rows)-len(kept) {
			t.Fatalf("case %d: dropped %d, want %d", i, dropped, len(rows)-len(kept))
		}
		gj, _ := got.MarshalJSON()
		wj, _ := want.MarshalJSON()
		if !bytes.Equal(gj, wj) {
			t.Fatalf("case %d: after %d:\n got %s\nwant %s", i, last, gj, wj)
		}
		if len(kept) == len(rows) && len(rows) > 0 && &got.Columns()[0] != &m.Columns()[0] {
			t.Fatalf("case %d: a batch kept whole was copied", i)
		}
	}
}

// TestParseRowsBody: the JSON body read straight into columns is what
// encoding/json and FromRows make of it.
func TestParseRowsBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	const now = 1795779452.5
	for i := range 3000 {
		rows := randomRows(rng)
		for j := range rows {
			if rows[j].Values == nil {
				rows[j].Values = map[string]Value{"x": 1}
			}
		}
		body, _ := AppendMetricsPayload(nil, MetricsLoggedV1{Rows: rows})
		got, ok, err := ParseRowsBody(body, now)
		if !ok && (bytes.Contains(body, []byte(`\`)) || rows == nil) {
			continue // escapes are left to encoding/json
		}
		if !ok || err != nil {
			t.Fatalf("case %d: ok %v err %v: %s", i, ok, err, body)
		}
		for j := range rows {
			if rows[j].Time == 0 {
				rows[j].Time = now
			}
		}
		want, _ := FromRows(rows)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: %s:\n got %v\nwant %v", i, body, got.Rows(), want.Rows())
		}
	}
	for body, want := range map[string]string{
		`{"rows":[{"step":1,"values":{"a":1}}]}`:                                       `[{1 1.7957794525e+09 map[a:1]}]`,
		`{"rows":[{"step":1,"values":{"a":1},"time":5}]}`:                              `[{1 5 map[a:1]}]`,
		`{"rows":[{"step":1,"time":0,"values":{"a":true,"b":false,"c":"NaN"}}]}`:       `[{1 1.7957794525e+09 map[a:1 b:0 c:NaN]}]`,
		`{"rows":[{"step":1,"values":{"a":1}},{"step":2,"values":{"b":"-Infinity"}}]}`: `[{1 1.7957794525e+09 map[a:1]} {2 1.7957794525e+09 map[b:-Inf]}]`,
	} {
		m, ok, err := ParseRowsBody([]byte(body), now)
		if !ok || err != nil {
			t.Errorf("%s: ok %v err %v", body, ok, err)
			continue
		}
		if got := strings.TrimSpace(fmtRows(m.Rows())); got != want {
			t.Errorf("%s: got %s, want %s", body, got, want)
		}
	}
	if _, ok, err := ParseRowsBody([]byte(`{"rows":[{"step":2,"values":{"a":1}},{"step":2,"values":{"a":1}}]}`), now); !ok || err == nil ||
		!strings.Contains(err.Error(), "steps must increase") {
		t.Errorf("repeated step: ok %v err %v", ok, err)
	}
	for _, body := range []string{`{"rows":[{"values":{"a":1},"step":1}]}`, `{"rows":[{"step":1,"values":null}]}`, `{"rows":[{"step":1}]}`, `{"rows":null}`} {
		if _, ok, _ := ParseRowsBody([]byte(body), now); ok {
			t.Errorf("fast path took %s", body)
		}
	}
}

func fmtRows(rows []Row) string { return fmt.Sprint(rows) }

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }

// header builds a v2 payload around raw columns.
func header(rows int, first, last int64, keys string, bin []byte) string {
	return `{"rows":` + itoa64(int64(rows)) + `,"first":` + itoa64(first) + `,"last":` + itoa64(last) + `,"keys":` + keys +
		`,"cols":"` + base64.StdEncoding.EncodeToString(bin) + `"}`
}

func cols(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func f64s(fs ...float64) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

// TestColumnsRejects: every malformed payload is an error.
func TestColumnsRejects(t *testing.T) {
	ok := cols([]byte{2, 1}, f64s(1, 2), []byte{0}, f64s(1, 2)) // steps 1,2; key a full
	if err := json.Unmarshal([]byte(header(2, 1, 2, `["a"]`, ok)), new(MetricsLoggedV2)); err != nil {
		t.Fatalf("the valid payload: %v", err)
	}
	for name, payload := range map[string]string{
		"bad base64":         strings.Replace(header(2, 1, 2, `["a"]`, ok), `"cols":"`, `"cols":"!`, 1),
		"base64 not strict":  `{"rows":0,"first":0,"last":0,"keys":[],"cols":"AB=="}`,
		"truncated":          header(2, 1, 2, `["a"]`, ok[:len(ok)-1]),
		"trailing bytes":     header(2, 1, 2, `["a"]`, append(ok[:len(ok):len(ok)], 0)),
		"rows lie (more)":    header(3, 1, 2, `["a"]`, ok),
		"rows lie (fewer)":   header(1, 1, 1, `["a"]`, ok),
		"rows huge":          header(1<<30, 1, 2, `["a"]`, ok),
		"rows negative":      header(-1, 1, 2, `["a"]`, ok),
		"first lies":         header(2, 0, 2, `["a"]`, ok),
		"last lies":          header(2, 1, 3, `["a"]`, ok),
		"repeated step":      header(2, 1, 1, `["a"]`, cols([]byte{2, 0}, f64s(1, 2), []byte{0}, f64s(1, 2))),
		"step overflow":      header(2, math.MaxInt64, math.MaxInt64, `["a"]`, cols(binary.AppendVarint(nil, math.MaxInt64), []byte{1}, f64s(1, 2), []byte{0}, f64s(1, 2))),
		"NaN time":           header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(1, math.NaN()), []byte{0}, f64s(1, 2))),
		"infinite time":      header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(math.Inf(-1), 2), []byte{0}, f64s(1, 2))),
		"keys unsorted":      header(2, 1, 2, `["b","a"]`, cols(ok, []byte{0}, f64s(1, 2))),
		"keys duplicate":     header(2, 1, 2, `["a","a"]`, cols(ok, []byte{0}, f64s(1, 2))),
		"key empty":          header(2, 1, 2, `[""]`, ok),
		"more keys":          header(2, 1, 2, `["a","b"]`, ok),
		"fewer keys":         header(2, 1, 2, `[]`, ok),
		"bad flag":           header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(1, 2), []byte{2}, f64s(1, 2))),
		"bitmap padding":     header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(1, 2), []byte{1, 0b101}, f64s(1, 2))),
		"bitmap empty":       header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(1, 2), []byte{1, 0})),
		"bitmap count lies":  header(2, 1, 2, `["a"]`, cols([]byte{2, 1}, f64s(1, 2), []byte{1, 0b01}, f64s(1, 2))),
		"empty with columns": header(0, 0, 0, `[]`, []byte{0}),
		"unknown field":      `{"rows":0,"first":0,"last":0,"keys":[],"cols":"","x":1}`,
		"no rows":            `{"first":0,"last":0,"keys":[],"cols":""}`,
		"not an object":      `[]`,
	} {
		var m MetricsLoggedV2
		if err := json.Unmarshal([]byte(payload), &m); err == nil {
			t.Errorf("%s: decoded %s", name, payload)
		}
	}
	for name, body := range map[string][]byte{
		"empty":          nil,
		"key count lies": {1, 200},
		"key too long":   {1, 1, 9, 'a'},
		"no columns":     {1, 1, 1, 'a'},
	} {
		if _, err := ParseBody(body); err == nil {
			t.Errorf("body %s: decoded", name)
		}
	}
}

// FuzzColumns: decoding arbitrary payloads and bodies never panics; what
// decodes re-encodes to itself and can be read and sliced.
func FuzzColumns(f *testing.F) {
	rng := rand.New(rand.NewPCG(14, 14))
	for range 20 {
		m, _ := FromRows(randomRows(rng))
		js, _ := m.MarshalJSON()
		f.Add(js, int64(0))
		f.Add(m.AppendBody(nil), int64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, last int64) {
		var m MetricsLoggedV2
		if json.Unmarshal(data, &m) != nil {
			var err error
			if m, err = ParseBody(data); err != nil {
				return
			}
		}
		js, _ := m.MarshalJSON()
		var back MetricsLoggedV2
		if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("re-decoding %s: %v", js, err)
		}
		rows := m.Rows()
		kept, dropped := m.After(last)
		if kept.Len()+dropped != len(rows) {
			t.Fatalf("after %d: %d kept + %d dropped of %d", last, kept.Len(), dropped, len(rows))
		}
		_ = m.RowWidths(nil)
	})
}

// TestFillTimes: rows sent without a wall time (0) get the given time;
// the others, and the values, are left as sent.
func TestFillTimes(t *testing.T) {
	sent := MustRows([]Row{{Step: 1, Time: 0, Values: map[string]Value{"a": 1}}, {Step: 2, Time: 7.5, Values: map[string]Value{"a": 2}}, {Step: 3, Time: 0, Values: map[string]Value{"a": 3}}})
	m, err := ParseBody(sent.AppendBody(nil))
	if err != nil {
		t.Fatal(err)
	}
	m.FillTimes(100.25)
	if got := []float64{m.Time(0), m.Time(1), m.Time(2)}; !reflect.DeepEqual(got, []float64{100.25, 7.5, 100.25}) {
		t.Fatalf("times %v, want [100.25 7.5 100.25]", got)
	}
	if c := m.Column(0); c.Value(0) != 1 || c.Value(2) != 3 {
		t.Fatalf("values changed: %v %v", c.Value(0), c.Value(2))
	}
	if sent.Time(0) != 0 {
		t.Fatal("the parsed batch shares its columns with the body's source")
	}
}
