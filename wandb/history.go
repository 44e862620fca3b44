package wandb

import (
	"math"
	"strconv"
	"strings"

	"github.com/logbook/logbook/events"
)

// The fast path of history lines. W&B's clients write flat lines of
// numbers: {"loss":0.5,"acc":NaN,"_step":3,"_runtime":1.2,"_timestamp":...}.
// historyLine reads such a line in one pass, without a map, and the values
// go straight into the batch's columns. Anything else (nested objects,
// media, lists, escapes in keys, keys Logbook refuses, a key given twice
// with a non-number) is left to the lenient path (parseLine and metrics),
// which decides exactly as before.

// historyLine is a line read on the fast path; keys point into the line.
type historyLine struct {
	step    int64
	hasStep bool // _step is an integer
	time    float64
	hasTime bool // _timestamp is a finite number
	keys    []string
	vals    []float64
	others  []string        // metric keys with a value that is not a number
	valid   map[string]bool // ValidateMetricKey's verdict on keys seen
	scan    lineScanner
}

// read reads line; ok is false when the lenient path must decide.
func (h *historyLine) read(line string) bool {
	h.keys, h.vals, h.others = h.keys[:0], h.vals[:0], h.others[:0]
	h.hasStep, h.hasTime = false, false
	s := &h.scan
	*s = lineScanner{s: line}
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return s.end()
	}
	for {
		key, ok := s.key()
		if !ok || !s.eat(':') || !h.field(key) {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat('}') && s.end() && h.consistent()
	}
}

// field reads the value of key.
func (h *historyLine) field(key string) bool {
	v, kind := h.scan.value()
	switch {
	case kind == bad:
		return false
	case key == "_step":
		h.hasStep = false
		if kind == numeral {
			h.step, h.hasStep = stepOf(h.scan.num)
		}
	case key == "_timestamp":
		h.hasTime = kind != other && !math.IsNaN(v) && !math.IsInf(v, 0)
		h.time = v
	case strings.HasPrefix(key, "_"):
	case kind == other:
		h.others = append(h.others, key)
	default:
		valid, seen := h.valid[key]
		if !seen {
			valid = events.ValidateMetricKey(key) == nil
			h.valid[strings.Clone(key)] = valid
		}
		if !valid {
			return false // skipped and logged by the lenient path
		}
		h.keys = append(h.keys, key)
		h.vals = append(h.vals, v)
	}
	return true
}

// consistent: a line within the row limit, where no metric key also
// holds a non-number (a JSON object keeps the last of a key given twice).
func (h *historyLine) consistent() bool {
	if len(h.keys) > events.MaxMetricsPerRow || len(h.others) > 8 {
		return false
	}
	for _, o := range h.others {
		for _, k := range h.keys {
			if k == o {
				return false
			}
		}
	}
	return true
}

// stepOf reads _step as intField does: an integer, or an integral float up
// to 2^62.
func stepOf(text string) (int64, bool) {
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, false
	}
	return int64(f), true
}

// Kinds of values.
const (
	bad     = iota // outside the fast path
	numeral        // a JSON number (text in num)
	metric         // a boolean or a bare NaN/Infinity/-Infinity
	other          // a string or null: not a metric
)

// lineScanner reads the JSON of a flat line.
type lineScanner struct {
	s   string
	i   int
	num string
}

func (s *lineScanner) ws() {
	for s.i < len(s.s) && (s.s[s.i] == ' ' || s.s[s.i] == '\t' || s.s[s.i] == '\r' || s.s[s.i] == '\n') {
		s.i++
	}
}

func (s *lineScanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.s) && s.s[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *lineScanner) end() bool {
	s.ws()
	return s.i == len(s.s)
}

// key reads a string without escapes.
func (s *lineScanner) key() (string, bool) {
	if !s.eat('"') {
		return "", false
	}
	start := s.i
	for ; s.i < len(s.s); s.i++ {
		switch c := s.s[s.i]; {
		case c == '"':
			s.i++
			return s.s[start : s.i-1], true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// value reads a value and its kind.
func (s *lineScanner) value() (float64, int) {
	s.ws()
	rest := s.s[s.i:]
	for _, w := range []struct {
		word string
		v    float64
	}{{"NaN", math.NaN()}, {"Infinity", math.Inf(1)}, {"-Infinity", math.Inf(-1)}, {"true", 1}, {"false", 0}} {
		if strings.HasPrefix(rest, w.word) {
			s.i += len(w.word)
			return w.v, metric
		}
	}
	switch {
	case strings.HasPrefix(rest, "null"):
		s.i += 4
		return 0, other
	case rest == "":
		return 0, bad
	case rest[0] == '"':
		return 0, s.skipString()
	case rest[0] == '-' || rest[0] >= '0' && rest[0] <= '9':
		return s.number()
	}
	return 0, bad // objects, lists
}

func (s *lineScanner) skipString() int {
	for s.i++; s.i < len(s.s); s.i++ {
		switch c := s.s[s.i]; {
		case c == '\\':
			s.i++
		case c == '"':
			s.i++
			return other
		case c < 0x20:
			return bad
		}
	}
	return bad
}

// number reads a JSON number; out of float64's range it is ±Inf, the value
// it is closest to (as the lenient path reads it).
func (s *lineScanner) number() (float64, int) {
	start := s.i
	digits := func() int {
		n := 0
		for s.i < len(s.s) && s.s[s.i] >= '0' && s.s[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.s[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.s) && s.s[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return 0, bad
	}
	if s.i < len(s.s) && s.s[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return 0, bad
		}
	}
	if s.i < len(s.s) && (s.s[s.i] == 'e' || s.s[s.i] == 'E') {
		s.i++
		if s.i < len(s.s) && (s.s[s.i] == '+' || s.s[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return 0, bad
		}
	}
	s.num = s.s[start:s.i]
	f, err := strconv.ParseFloat(s.num, 64)
	if ne, ok := err.(*strconv.NumError); err != nil && (!ok || ne.Err != strconv.ErrRange) {
		return 0, bad
	}
	return f, numeral
}
