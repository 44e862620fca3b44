package wandb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/logbook/logbook/events"
)

// W&B's Python client writes the bare tokens NaN, Infinity and -Infinity,
// which encoding/json rejects. quoteNonFinite rewrites them, outside string
// literals, into JSON strings: with the marker prefix for metric lines (so a
// user's string "NaN" is not mistaken for a number) or plain for configs.
const nonFiniteMark = "\x00"

func quoteNonFinite(b []byte, mark bool) []byte {
	if !bytes.Contains(b, []byte("NaN")) && !bytes.Contains(b, []byte("Infinity")) {
		return b
	}
	prefix := ""
	if mark {
		prefix = `\u0000`
	}
	out := make([]byte, 0, len(b)+16)
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case bytes.HasPrefix(b[i:], []byte("NaN")):
			out = append(out, `"`+prefix+`NaN"`...)
			i += len("NaN") - 1
			continue
		case bytes.HasPrefix(b[i:], []byte("Infinity")):
			out = append(out, `"`+prefix+`Infinity"`...)
			i += len("Infinity") - 1
			continue
		case bytes.HasPrefix(b[i:], []byte("-Infinity")):
			out = append(out, `"`+prefix+`-Infinity"`...)
			i += len("-Infinity") - 1
			continue
		}
		out = append(out, c)
	}
	return out
}

// parseLine parses one JSON object line leniently: numbers stay exact
// (json.Number) and non-finite tokens become marked strings.
func parseLine(line string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite([]byte(line), true)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

// number returns the metric value of a parsed JSON value: numbers, booleans
// (0 and 1, as W&B plots them) and the non-finite tokens. Anything else
// (strings, null, lists) is not a metric.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			// Out of float64 range: ParseFloat returns ±Inf, which is
			// what the number is closest to.
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return f, true
			}
			return 0, false
		}
		return f, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string:
		if s, ok := strings.CutPrefix(x, nonFiniteMark); ok {
			f, err := events.ParseValue([]byte(s))
			return f, err == nil
		}
	}
	return 0, false
}

// metrics flattens a parsed line into metric values: nested objects become
// "outer/inner" keys, top-level keys starting with '_' (W&B's _step,
// _runtime, _timestamp, _wandb) are left out, objects with a "_type" (W&B
// media, histograms, tables) are left out, and keys Logbook would refuse are
// skipped (named in skipped, for the log).
func metrics(m map[string]any) (vals map[string]events.Value, skipped []string) {
	vals = map[string]events.Value{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		if _, media := m["_type"]; media && prefix != "" {
			return
		}
		for k, v := range m {
			if prefix == "" && strings.HasPrefix(k, "_") {
				continue
			}
			key := prefix + k
			if sub, ok := v.(map[string]any); ok {
				walk(key+"/", sub)
				continue
			}
			f, ok := number(v)
			if !ok {
				continue
			}
			if events.ValidateMetricKey(key) != nil {
				skipped = append(skipped, key)
				continue
			}
			vals[key] = events.Value(f)
		}
	}
	walk("", m)
	if len(vals) > events.MaxMetricsPerRow {
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys[events.MaxMetricsPerRow:] {
			delete(vals, k)
			skipped = append(skipped, k)
		}
	}
	return vals, skipped
}

// intField returns an integer field of a parsed line (W&B's _step).
func intField(m map[string]any, key string) (int64, bool) {
	n, ok := m[key].(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, false
	}
	return int64(f), true
}

// floatField returns a float field of a parsed line (W&B's _timestamp).
func floatField(m map[string]any, key string) (float64, bool) {
	f, ok := number(m[key])
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// encodeLine writes a W&B history or summary line: the values, plus the
// reserved fields in extra, with bare NaN/Infinity tokens as W&B writes them.
func encodeLine(vals map[string]events.Value, extra map[string]float64) string {
	keys := make([]string, 0, len(vals)+len(extra))
	for k := range vals {
		keys = append(keys, k)
	}
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		b = append(b, kb...)
		b = append(b, ':')
		f, ok := extra[k]
		if !ok {
			f = float64(vals[k])
		}
		switch {
		case math.IsNaN(f):
			b = append(b, "NaN"...)
		case math.IsInf(f, 1):
			b = append(b, "Infinity"...)
		case math.IsInf(f, -1):
			b = append(b, "-Infinity"...)
		case f == math.Trunc(f) && math.Abs(f) < 1e15:
			// Integers stay integers: wandb-core takes _step only as one.
			b = strconv.AppendInt(b, int64(f), 10)
		default:
			b = strconv.AppendFloat(b, f, 'g', -1, 64)
		}
	}
	return string(append(b, '}'))
}
