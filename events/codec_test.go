package events

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden pins the encoding of every event type: a change of shape shows
// as a diff of testdata/golden/<type>.json in review. Refresh with -update.
func TestGolden(t *testing.T) {
	seen := map[Type]bool{}
	for _, e := range samples {
		seen[e.Type] = true
		t.Run(string(e.Type), func(t *testing.T) {
			got, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "golden", string(e.Type)+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./events -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("encoding of %s changed:\n got: %s\nwant: %s\nA change of shape needs a new version and an upcaster.", e.Type, pretty.Bytes(), want)
			}
			// The golden file decodes back to the same event.
			back, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(back, e) {
				t.Errorf("decode(golden) = %+v, want %+v", back, e)
			}
		})
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("event type %s has no sample in samples_test.go", typ)
		}
	}
}

// sameEvent compares events, treating NaN metric values as equal.
func sameEvent(a, b Event) bool {
	ja, _ := Encode(a)
	jb, _ := Encode(b)
	return bytes.Equal(ja, jb) && a.Time.Equal(b.Time) && reflect.TypeOf(a.Payload) == reflect.TypeOf(b.Payload)
}

func TestNonFiniteValuesRoundTrip(t *testing.T) {
	for _, in := range []string{`"NaN"`, `NaN`, `"Infinity"`, `Infinity`, `"-Infinity"`, `-Infinity`, `1.5e+09`, `-0.25`, `true`} {
		var v Value
		if err := json.Unmarshal([]byte(in), &v); err != nil && in[0] == '"' {
			t.Errorf("unmarshal %s: %v", in, err)
			continue
		}
		f, err := ParseValue([]byte(in))
		if err != nil {
			t.Errorf("ParseValue(%s): %v", in, err)
			continue
		}
		out, _ := Value(f).MarshalJSON()
		g, err := ParseValue(out)
		if err != nil || !(g == f || math.IsNaN(g) && math.IsNaN(f)) {
			t.Errorf("%s -> %v -> %s -> %v (%v): not faithful", in, f, out, g, err)
		}
	}
	for _, bad := range []string{`"x"`, `{}`, `[]`, `null`, ``, `1e999x`} {
		if _, err := ParseValue([]byte(bad)); err == nil {
			t.Errorf("ParseValue(%q) accepted a non-number", bad)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, in := range map[string]string{
		"not json":        `{`,
		"unknown type":    `{"id":"x","type":"run_exploded","v":1,"entity":"a","actor":"a","time":"2026-11-27T12:00:00Z","payload":{}}`,
		"future version":  `{"id":"x","type":"run_finished","v":9,"entity":"a","actor":"a","time":"2026-11-27T12:00:00Z","payload":{}}`,
		"no payload":      `{"id":"x","type":"run_finished","v":1,"entity":"a","actor":"a","time":"2026-11-27T12:00:00Z"}`,
		"payload of type": `{"id":"x","type":"metrics_logged","v":1,"entity":"a","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":"many"}}`,
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// FuzzDecode: decoding arbitrary bytes never panics, and whatever decodes
// re-encodes and decodes to the same event.
func FuzzDecode(f *testing.F) {
	for _, e := range samples {
		b, _ := Encode(e)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"metrics_logged","v":1,"payload":{"rows":[{"step":1,"values":{"x":NaN}}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(e)
		if err != nil {
			return // e.g. a payload with a type the envelope did not name
		}
		e2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", b, err)
		}
		b2, _ := Encode(e2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	})
}
