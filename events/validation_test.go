package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/logbook/logbook/events"
)

func TestCheckJSONText(t *testing.T) {
	for _, c := range []struct {
		doc string
		ok  bool
	}{
		{`{"loss": 1}`, true},
		{`{"naïve 损失 🚀": 1}`, true},
		{`{"\u00e9\ud83d\ude80": 1}`, true}, // é and a surrogate pair (🚀)
		{`{"a\\ud800": 1}`, true},           // an escaped backslash, then text
		{`{"\"\\\"": "\\u"}`, true},
		{"{\"bad\xff\": 1}", false},
		{"{\"cut \xe6\x8d\": 1}", false},
		{`{"\udc80": 1}`, false},       // a lone low surrogate
		{`{"\ud800": 1}`, false},       // a lone high surrogate
		{`{"\ud800\u0041": 1}`, false}, // high, then not a low one
		{`{"x\\\ud800": 1}`, false},    // escaped backslash, then a lone surrogate
		{`{"end\ud83d`, false},         // cut short
	} {
		err := events.CheckJSONText([]byte(c.doc))
		if (err == nil) != c.ok {
			t.Errorf("CheckJSONText(%q) = %v, want ok=%v", c.doc, err, c.ok)
		}
		// Whatever passes decodes without U+FFFD: nothing is replaced.
		var m map[string]any
		if err == nil && json.Unmarshal([]byte(c.doc), &m) == nil {
			for k, v := range m {
				if sv, _ := v.(string); strings.ContainsRune(k, '\uFFFD') || strings.ContainsRune(sv, '\uFFFD') {
					t.Errorf("%q passed but decodes with U+FFFD", c.doc)
				}
			}
		}
	}
}

func TestValidateStepAndLabel(t *testing.T) {
	for step, ok := range map[int64]bool{0: true, 1 << 53: true, 1<<53 + 1: false, 1<<63 - 1: false, -1: false} {
		if err := events.ValidateStep(step); (err == nil) != ok {
			t.Errorf("ValidateStep(%d) = %v", step, err)
		}
	}
	if err := events.ValidateStep(1<<63 - 1); err == nil || !strings.Contains(err.Error(), "2^53") {
		t.Errorf("error does not name the bound: %v", err)
	}
	for s, ok := range map[string]bool{"": true, "sweep-1 (lr=0.1)": true, "a\x00b": false, "a\nb": false, "bad\xff": false, strings.Repeat("g", 129): false} {
		if err := events.ValidateLabel("group", s, events.MaxRunNameLen); (err == nil) != ok {
			t.Errorf("ValidateLabel(%q) = %v", s, err)
		}
	}
}
