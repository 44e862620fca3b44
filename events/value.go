package events

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// Value is a metric value. Training losses do go NaN or infinite, so non-finite
// values are kept faithfully: JSON has no token for them, so they are encoded
// as the strings "NaN", "Infinity" and "-Infinity" (and decoded from those
// strings or from the bare tokens W&B's Python client writes).
type Value float64

// MarshalJSON encodes v as a JSON number, or as a string when not finite.
func (v Value) MarshalJSON() ([]byte, error) {
	return AppendValue(nil, float64(v)), nil
}

// AppendValue appends the JSON encoding of f to b.
func AppendValue(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

var errValue = errors.New("metric value must be a number, NaN, Infinity or -Infinity")

// UnmarshalJSON decodes a number, or one of the non-finite spellings.
func (v *Value) UnmarshalJSON(b []byte) error {
	f, err := ParseValue(b)
	if err != nil {
		return err
	}
	*v = Value(f)
	return nil
}

// ParseValue parses a JSON number or a non-finite spelling (quoted or bare).
// Booleans count as 0 and 1, as W&B plots them.
func ParseValue(b []byte) (float64, error) {
	b = bytes.TrimSpace(b)
	switch string(b) {
	case `"NaN"`, `NaN`, `"nan"`:
		return math.NaN(), nil
	case `"Infinity"`, `Infinity`, `"inf"`, `"+Infinity"`, `+Infinity`:
		return math.Inf(1), nil
	case `"-Infinity"`, `-Infinity`, `"-inf"`:
		return math.Inf(-1), nil
	case `true`:
		return 1, nil
	case `false`:
		return 0, nil
	}
	if len(b) == 0 || b[0] == '"' {
		return 0, errValue
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errValue
	}
	return f, nil
}
