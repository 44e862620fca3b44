package events

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// slowDecode is Decode without the fast path.
func slowDecode(b []byte) (Event, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, err
	}
	var p MetricsLoggedV1
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return Event{}, err
	}
	return Event{ID: env.ID, Type: env.Type, Version: env.Version, Entity: env.Entity, Project: env.Project,
		Run: env.Run, Actor: env.Actor, Time: env.Time, Cause: env.Cause, Payload: p}, nil
}

// slowEncode is Encode without the fast path.
func slowEncode(e Event) ([]byte, error) {
	p, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{ID: e.ID, Type: e.Payload.EventType(), Version: 1, Entity: e.Entity, Project: e.Project,
		Run: e.Run, Actor: e.Actor, Time: e.Time.UTC(), Cause: e.Cause, Payload: p})
}

var oddFloats = []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-7, 1e-6, 9.99e-7, 1e20, 1e21, 1e22, -1e21, 123456789.123,
	math.MaxFloat64, math.SmallestNonzeroFloat64, 5e-324, 1.5e300, 1795779452.902, 3.0000000000000004, 1e-9}

var oddKeys = []string{"loss", "train/loss", "a.b", "é", "x<y", "a&b", "q\"uote", "back\\slash", "tab\t", "\u2028", "日本", "_x", "z"}

func randomMetrics(rng *rand.Rand) Event {
	e := benchMetrics(0, 0)
	e.Run = []string{"", "01JDX0000000000000000000AA"}[rng.IntN(2)]
	e.Cause = []string{"", "c<1>"}[rng.IntN(2)]
	e.Time = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
	rows := make([]Row, rng.IntN(5))
	for i := range rows {
		var vals map[string]Value
		if rng.IntN(8) > 0 {
			vals = map[string]Value{}
			for range rng.IntN(6) {
				var v float64
				switch rng.IntN(4) {
				case 0:
					v = oddFloats[rng.IntN(len(oddFloats))]
				case 1:
					v = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[rng.IntN(3)]
				default:
					v = (rng.Float64() - 0.5) * math.Pow(10, float64(rng.IntN(40)-20))
				}
				vals[oddKeys[rng.IntN(len(oddKeys))]] = Value(v)
			}
		}
		t := oddFloats[rng.IntN(len(oddFloats))]
		rows[i] = Row{Step: rng.Int64N(1<<62) - 1<<61, Time: t, Values: vals}
	}
	if rng.IntN(10) == 0 {
		rows = nil
	}
	e.Payload = MetricsLoggedV1{Rows: rows}
	return e
}

// TestFastEncodeIsEncodingJSON: the fast encoder writes exactly what
// encoding/json writes.
func TestFastEncodeIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 20000 {
		e := randomMetrics(rng)
		want, err := slowEncode(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A non-finite row time fails as encoding/json fails.
	e := benchMetrics(1, 1)
	e.Payload.(MetricsLoggedV1).Rows[0].Time = math.NaN()
	if _, err := Encode(e); err == nil {
		t.Error("a NaN row time encoded")
	}
}

// TestFastDecodeIsEncodingJSON: whatever the fast decoder accepts decodes
// exactly as encoding/json decodes it.
func TestFastDecodeIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	inputs := [][]byte{}
	for range 5000 {
		b, _ := Encode(randomMetrics(rng))
		inputs = append(inputs, b)
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, b, " ", "\t")
		inputs = append(inputs, pretty.Bytes())
	}
	for _, s := range []string{
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"values":{"x":true,"y":false,"z":"nan","w":"-inf","v":"+Infinity"},"time":1e3,"step":7}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{"x":1,"x":2}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{}}]}}`,
	} {
		inputs = append(inputs, []byte(s))
	}
	// Inputs the fast path must leave to encoding/json.
	for _, s := range []string{
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1.0,"values":{"x":1}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"Step":1,"values":{"x":1}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{"x":null}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{"x":1e999}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{"x\u0041":1}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":1,"values":{"x":NaN}}]}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":null}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[]},"extra":1}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[]}} x`,
		`{"id":"a","payload":{"rows":[]},"type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z"}`,
		`{"id":"a","type":"run_finished","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{}}`,
		`{"id":"a","type":"metrics_logged","v":2,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[]}}`,
		"{\"id\":\"a\xff\",\"type\":\"metrics_logged\",\"v\":1,\"entity\":\"e\",\"actor\":\"a\",\"time\":\"2026-11-27T12:00:00Z\",\"payload\":{\"rows\":[]}}",
	} {
		if _, ok := decodeMetrics([]byte(s)); ok {
			t.Errorf("fast path took %s", s)
		}
		inputs = append(inputs, []byte(s))
	}
	for _, b := range inputs {
		checkFastDecode(t, b)
	}
}

func checkFastDecode(t *testing.T, b []byte) {
	t.Helper()
	fast, ok := decodeMetrics(b)
	if !ok {
		return
	}
	slow, err := slowDecode(b)
	if err != nil {
		t.Fatalf("fast path decoded what encoding/json refuses (%v): %s", err, b)
	}
	fb, _ := slowEncode(fast)
	sb, _ := slowEncode(slow)
	if !bytes.Equal(fb, sb) || !fast.Time.Equal(slow.Time) || fast.Time.Location().String() != slow.Time.Location().String() ||
		!sameShape(fast.Payload.(MetricsLoggedV1), slow.Payload.(MetricsLoggedV1)) {
		t.Fatalf("fast and encoding/json differ on %s:\nfast %s\nslow %s", b, fb, sb)
	}
}

// sameShape compares nil-ness of rows and value maps, which encodings hide
// for empty ones.
func sameShape(a, b MetricsLoggedV1) bool {
	if (a.Rows == nil) != (b.Rows == nil) || len(a.Rows) != len(b.Rows) {
		return false
	}
	for i := range a.Rows {
		if (a.Rows[i].Values == nil) != (b.Rows[i].Values == nil) {
			return false
		}
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b)
}

// FuzzFastDecode: on any input the fast path accepts, it agrees with
// encoding/json.
func FuzzFastDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 20 {
		b, _ := Encode(randomMetrics(rng))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastDecode(t, b) })
}

// TestEncodeMetricsWith: an event built around a payload's JSON is Encode's
// bytes for a canonical payload, and decodes to the same event for any
// layout ParseMetricsPayload accepts.
func TestEncodeMetricsWith(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for range 2000 {
		e := randomMetrics(rng)
		pl := e.Payload.(MetricsLoggedV1)
		if pl.Rows == nil {
			continue
		}
		payload, _ := AppendMetricsPayload(nil, pl)
		want, _ := Encode(e)
		got, ok := EncodeMetricsWith(e, payload)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, payload, "", "  ")
		if _, ok := ParseMetricsPayload(pretty.Bytes()); !ok {
			continue
		}
		got, _ = EncodeMetricsWith(e, pretty.Bytes())
		back, err := Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := Encode(back); !bytes.Equal(b, want) {
			t.Fatalf("\n got %s\nwant %s", b, want)
		}
	}
}
