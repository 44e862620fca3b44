package events

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The metrics hot path. A metrics_logged event carries thousands of values;
// encoding/json spends most of its time on reflection, map sorting and
// per-value allocations. The functions here produce and accept exactly the
// same bytes as the encoding/json codec in codec.go (the golden files and
// the equivalence tests pin this), without reflection:
//
//   - appendMetricsEvent writes what Encode writes, byte for byte; strings
//     that need escaping go through encoding/json.
//   - decodeMetrics accepts the subset of JSON the encoders (ours, and any
//     sane client) write and returns exactly what encoding/json would; on
//     anything else (escapes, unknown or duplicate fields, nulls, other
//     types or versions) it gives up and Decode falls back to
//     encoding/json, which then decides, with its own errors.

// appendMetricsEvent appends the encoding of e, whose payload is pl, at
// version 2. ok is false when the envelope's time does not encode.
func appendMetricsEvent(b []byte, e Event, pl MetricsLoggedV2) (_ []byte, ok bool) {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"type":"metrics_logged","v":2,"entity":`...)
	b = appendString(b, e.Entity)
	if e.Project != "" {
		b = append(b, `,"project":`...)
		b = appendString(b, e.Project)
	}
	if e.Run != "" {
		b = append(b, `,"run":`...)
		b = appendString(b, e.Run)
	}
	b = append(b, `,"actor":`...)
	b = appendString(b, e.Actor)
	b = append(b, `,"time":`...)
	t, err := e.Time.UTC().MarshalJSON()
	if err != nil {
		return b, false
	}
	b = append(b, t...)
	if e.Cause != "" {
		b = append(b, `,"cause":`...)
		b = appendString(b, e.Cause)
	}
	b = append(b, `,"payload":`...)
	b = pl.AppendJSON(b)
	return append(b, '}'), true
}

// AppendMetricsPayload appends the JSON encoding of pl, a version 1 payload
// (still read from old logs), the same bytes json.Marshal writes
// ({"rows":[...]}, map keys sorted). ok is false when json.Marshal would
// fail (a non-finite row time).
func AppendMetricsPayload(b []byte, pl MetricsLoggedV1) (_ []byte, ok bool) {
	if pl.Rows == nil {
		return append(b, `{"rows":null}`...), true
	}
	b = append(b, `{"rows":[`...)
	var keys []string
	var vals []Value
	for i, r := range pl.Rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"step":`...)
		b = strconv.AppendInt(b, r.Step, 10)
		b = append(b, `,"time":`...)
		if b, ok = appendFloat(b, r.Time); !ok {
			return b, false
		}
		b = append(b, `,"values":`...)
		if r.Values == nil {
			b = append(b, "null}"...)
			continue
		}
		// Rows mostly log the same metrics: reuse the previous row's
		// sorted keys when they are exactly this row's.
		same := len(keys) == len(r.Values)
		vals = vals[:0]
		for _, k := range keys {
			if !same {
				break
			}
			v, ok := r.Values[k]
			same = ok
			vals = append(vals, v)
		}
		if !same {
			keys = keys[:0]
			for k := range r.Values {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			vals = vals[:0]
			for _, k := range keys {
				vals = append(vals, r.Values[k])
			}
		}
		b = append(b, '{')
		for j, k := range keys {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = AppendValue(b, float64(vals[j]))
		}
		b = append(b, "}}"...)
	}
	return append(b, "]}"...), true
}

// appendFloat writes a float64 as encoding/json does (ES6 number format).
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// plain reports whether s encodes as itself between quotes: printable
// ASCII without the characters encoding/json escapes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // escapes exactly as the envelope encoder does
	return append(b, q...)
}

// parser reads the JSON subset of decodeMetrics. Every method reports ok =
// false on anything outside it.
type parser struct {
	b     []byte
	i     int
	names map[string]string // metric keys seen, so each is allocated once
	err   error             // set when the input was in the subset but invalid
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte (0 at the end).
func (p *parser) next() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.next() == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, in valid
// UTF-8, and returns its bytes (not copied).
func (p *parser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	return nil, false
}

// number reads a JSON number and returns its text; integer reports that it
// has neither fraction nor exponent.
func (p *parser) number() (text []byte, integer, ok bool) {
	p.ws()
	start := p.i
	b := p.b
	i := p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	p.i = i
	return b[start:i], integer, true
}

func (p *parser) int64() (int64, bool) {
	t, integer, ok := p.number()
	if !ok || !integer {
		return 0, false
	}
	n, err := strconv.ParseInt(string(t), 10, 64) // no allocation: the conversion does not escape
	return n, err == nil
}

func (p *parser) float() (float64, bool) {
	t, _, ok := p.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(t), 64)
	return f, err == nil
}

// value reads a metric value as Value.UnmarshalJSON does: a number, a
// quoted non-finite spelling, or a boolean.
func (p *parser) value() (Value, bool) {
	switch c := p.next(); {
	case c == '"':
		s, ok := p.str()
		if !ok {
			return 0, false
		}
		switch string(s) {
		case "NaN", "nan":
			return Value(math.NaN()), true
		case "Infinity", "inf", "+Infinity":
			return Value(math.Inf(1)), true
		case "-Infinity", "-inf":
			return Value(math.Inf(-1)), true
		}
		return 0, false
	case c == 't':
		if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true" {
			p.i += 4
			return 1, true
		}
		return 0, false
	case c == 'f':
		if len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false" {
			p.i += 5
			return 0, true
		}
		return 0, false
	}
	f, ok := p.float()
	return Value(f), ok
}

// object reads {"key": value, ...}, calling field for each key with the
// parser positioned at its value.
func (p *parser) object(field func(key []byte) bool) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.eat(':') || !field(k) {
			return false
		}
		if p.eat(',') {
			continue
		}
		return p.eat('}')
	}
}

// intern returns k as a string, allocated once per decode.
func (p *parser) intern(k []byte) string {
	if s, ok := p.names[string(k)]; ok {
		return s
	}
	if p.names == nil {
		p.names = make(map[string]string, 64)
	}
	s := string(k)
	p.names[s] = s
	return s
}

func (p *parser) values(hint int) (map[string]Value, bool) {
	if p.next() != '{' {
		return nil, false // null is left to encoding/json
	}
	m := make(map[string]Value, hint)
	ok := p.object(func(k []byte) bool {
		v, ok := p.value()
		if ok {
			m[p.intern(k)] = v
		}
		return ok
	})
	return m, ok
}

func (p *parser) row(hint int) (Row, bool) {
	var r Row
	var seen [3]bool
	ok := p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "step":
			if seen[0] {
				return false
			}
			seen[0] = true
			r.Step, ok = p.int64()
		case "time":
			if seen[1] {
				return false
			}
			seen[1] = true
			r.Time, ok = p.float()
		case "values":
			if seen[2] {
				return false
			}
			seen[2] = true
			r.Values, ok = p.values(hint)
		}
		return ok
	})
	return r, ok
}

// payload reads {"rows":[...]}.
func (p *parser) payload() (MetricsLoggedV1, bool) {
	var pl MetricsLoggedV1
	seen := false
	ok := p.object(func(k []byte) bool {
		if string(k) != "rows" || seen || !p.eat('[') {
			return false
		}
		seen = true
		pl.Rows = make([]Row, 0, 64)
		if p.eat(']') {
			return true
		}
		hint := 8
		for {
			r, ok := p.row(hint)
			if !ok {
				return false
			}
			hint = len(r.Values)
			pl.Rows = append(pl.Rows, r)
			if p.eat(',') {
				continue
			}
			return p.eat(']')
		}
	})
	return pl, ok
}

// end reports whether only whitespace is left.
func (p *parser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// ParseMetricsPayload reads a metrics_logged payload ({"rows":[...]}, also
// the body of the HTTP log API) on the fast path. ok is false when the
// input is outside the subset it handles; encoding/json then decides.
func ParseMetricsPayload(b []byte) (MetricsLoggedV1, bool) {
	p := parser{b: b}
	pl, ok := p.payload()
	if !ok || !p.end() {
		return MetricsLoggedV1{}, false
	}
	return pl, true
}

// decodeMetrics decodes a metrics_logged event (version 1, upcast, or 2) on
// the fast path.
func decodeMetrics(b []byte) (Event, bool) {
	p := parser{b: b}
	var e Event
	var seen uint16
	var version int64
	var pl MetricsLoggedV2
	once := func(bit uint16) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	str := func(dst *string, bit uint16) bool {
		s, ok := p.str()
		if !ok || !once(bit) {
			return false
		}
		*dst = string(s)
		return true
	}
	ok := p.object(func(k []byte) bool {
		switch string(k) {
		case "id":
			return str(&e.ID, 1)
		case "type":
			s, ok := p.str()
			if !ok || !once(2) || string(s) != string(MetricsLogged) {
				return false
			}
			e.Type = MetricsLogged
			return true
		case "v":
			v, ok := p.int64()
			if !ok || !once(4) || v != 1 && v != 2 {
				return false
			}
			version = v
			return true
		case "entity":
			return str(&e.Entity, 8)
		case "project":
			return str(&e.Project, 16)
		case "run":
			return str(&e.Run, 32)
		case "actor":
			return str(&e.Actor, 64)
		case "cause":
			return str(&e.Cause, 128)
		case "time":
			p.ws()
			start := p.i
			if _, ok := p.str(); !ok || !once(256) {
				return false
			}
			return e.Time.UnmarshalJSON(p.b[start:p.i]) == nil
		case "payload":
			if seen&(2|4) != 2|4 || !once(512) { // the type and version must come first
				return false
			}
			return p.metricsPayload(version, &pl)
		}
		return false
	})
	if !ok || !p.end() || seen&(2|4|512) != 2|4|512 {
		return Event{}, false
	}
	if ti := registry[MetricsLogged]; ti == nil || ti.version != 2 {
		return Event{}, false
	}
	e.Version = 2
	e.Payload = pl
	return e, true
}

// metricsPayload reads the payload of a metrics_logged event of version v
// into pl, upcasting version 1 rows to columns.
func (p *parser) metricsPayload(v int64, pl *MetricsLoggedV2) bool {
	if v == 2 {
		var ok bool
		*pl, ok = p.columns()
		return ok
	}
	v1, ok := p.payload()
	if !ok {
		return false
	}
	var err error
	*pl, err = FromRows(v1.Rows)
	return err == nil
}

// ParseRowsBody reads the JSON body of the HTTP log API, {"rows":[{"step":
// S,"time":T,"values":{...}}]}, straight into columns: no map per row, each
// value parsed once. A row without a time (or time 0) gets now. ok is false
// when the body is outside the fast path's subset (escapes, fields in
// another order, nulls, ...): decode it with encoding/json into a
// MetricsLoggedV1 then. err is set for a body in the subset that is not a
// valid batch (steps that do not increase).
func ParseRowsBody(body []byte, now float64) (_ MetricsLoggedV2, ok bool, err error) {
	p := parser{b: body}
	var b Builder
	seen := false
	ok = p.object(func(k []byte) bool {
		if string(k) != "rows" || seen || !p.eat('[') {
			return false
		}
		seen = true
		if p.eat(']') {
			return true
		}
		for {
			if !p.rowInto(&b, now) {
				return false
			}
			if p.eat(',') {
				continue
			}
			return p.eat(']')
		}
	})
	if !ok || !seen || !p.end() {
		return MetricsLoggedV2{}, false, nil
	}
	m, err := b.Build()
	return m, true, err
}

// rowInto reads one row into b: step first, then time and values in
// either order (the values start the builder's row).
func (p *parser) rowInto(b *Builder, now float64) bool {
	var step int64
	t := now
	var seen [3]bool
	ok := p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "step":
			if seen[0] || seen[2] {
				return false
			}
			seen[0] = true
			step, ok = p.int64()
		case "time":
			if seen[1] {
				return false
			}
			seen[1] = true
			if t, ok = p.float(); ok && t == 0 {
				t = now
			}
			if seen[2] { // the row has started
				b.SetTime(t)
			}
		case "values":
			if !seen[0] || seen[2] || p.next() != '{' {
				return false
			}
			seen[2] = true
			b.Row(step, t)
			ok = p.object(func(k []byte) bool {
				v, ok := p.value()
				if ok {
					b.ValueBytes(k, float64(v))
				}
				return ok
			})
		}
		return ok
	})
	return ok && seen[2]
}
