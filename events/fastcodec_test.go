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
func slowDecode(b []byte) (Event, error) { return decodeGeneric(b) }

// slowEncode is Encode without the fast path (encoding/json and the
// payload's MarshalJSON).
func slowEncode(e Event) ([]byte, error) {
	p, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{ID: e.ID, Type: e.Payload.EventType(), Version: CurrentVersion(e.Payload.EventType()), Entity: e.Entity,
		Project: e.Project, Run: e.Run, Actor: e.Actor, Time: e.Time.UTC(), Cause: e.Cause, Payload: p})
}

// encodeV1 writes an event of version 1, as old logs hold them.
func encodeV1(e Event, pl MetricsLoggedV1) ([]byte, error) {
	p, err := json.Marshal(pl)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{ID: e.ID, Type: MetricsLogged, Version: 1, Entity: e.Entity, Project: e.Project,
		Run: e.Run, Actor: e.Actor, Time: e.Time.UTC(), Cause: e.Cause, Payload: p})
}

var oddFloats = []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-7, 1e-6, 9.99e-7, 1e20, 1e21, 1e22, -1e21, 123456789.123,
	math.MaxFloat64, math.SmallestNonzeroFloat64, 5e-324, 1.5e300, 1795779452.902, 3.0000000000000004, 1e-9}

var oddKeys = []string{"loss", "train/loss", "a.b", "é", "x<y", "a&b", "q\"uote", "back\\slash", "tab\t", "\u2028", "日本", "_x", "z"}

// randomRows returns rows with steps increasing, odd keys and values.
func randomRows(rng *rand.Rand) []Row {
	rows := make([]Row, rng.IntN(5))
	step := rng.Int64N(1<<62) - 1<<61
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
		step += 1 + rng.Int64N([]int64{1, 3, 1 << 20}[rng.IntN(3)])
		rows[i] = Row{Step: step, Time: oddFloats[rng.IntN(len(oddFloats))], Values: vals}
	}
	if rng.IntN(10) == 0 {
		rows = nil
	}
	return rows
}

// randomMetrics returns a metrics event of random rows and its rows.
func randomMetrics(rng *rand.Rand) (Event, []Row) {
	e := benchMetrics(0, 0)
	e.Run = []string{"", "01JDX0000000000000000000AA"}[rng.IntN(2)]
	e.Cause = []string{"", "c<1>"}[rng.IntN(2)]
	e.Time = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
	rows := randomRows(rng)
	pl, err := FromRows(rows)
	if err != nil {
		panic(err)
	}
	e.Payload = pl
	return e, rows
}

// TestFastEncodeIsEncodingJSON: the fast encoder writes exactly what
// encoding/json writes; the v1 payload encoder too (the client and the
// corpus of old events use it).
func TestFastEncodeIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 20000 {
		e, rows := randomMetrics(rng)
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
		want, _ = json.Marshal(MetricsLoggedV1{Rows: rows})
		if got, ok := AppendMetricsPayload(nil, MetricsLoggedV1{Rows: rows}); !ok || !bytes.Equal(got, want) {
			t.Fatalf("v1 case %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A non-finite row time fails as encoding/json fails.
	if _, ok := AppendMetricsPayload(nil, MetricsLoggedV1{Rows: []Row{{Time: math.NaN()}}}); ok {
		t.Error("a NaN row time encoded")
	}
	if _, err := FromRows([]Row{{Time: math.Inf(1)}}); err == nil {
		t.Error("an infinite row time built")
	}
	// An old version's payload is not written under the current version.
	if _, err := Encode(Event{Payload: MetricsLoggedV1{}}); err == nil {
		t.Error("a v1 payload encoded")
	}
}

// TestFastDecodeIsEncodingJSON: whatever the fast decoder accepts decodes
// exactly as encoding/json decodes it.
func TestFastDecodeIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	inputs := [][]byte{}
	for range 5000 {
		e, rows := randomMetrics(rng)
		b, _ := Encode(e)
		v1, _ := encodeV1(e, MetricsLoggedV1{Rows: rows})
		for _, b := range [][]byte{b, v1} {
			inputs = append(inputs, b)
			var pretty bytes.Buffer
			_ = json.Indent(&pretty, b, " ", "\t")
			inputs = append(inputs, pretty.Bytes())
		}
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
		`{"id":"a","type":"metrics_logged","v":3,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":0,"first":0,"last":0,"keys":[],"cols":""}}`,
		`{"id":"a","type":"metrics_logged","v":2,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":0,"first":0,"last":0,"keys":["\u0041"],"cols":""}}`,
		`{"id":"a","type":"metrics_logged","v":2,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":1,"first":0,"last":0,"keys":[],"cols":"AA=="}}`,
		`{"id":"a","type":"metrics_logged","v":1,"entity":"e","actor":"a","time":"2026-11-27T12:00:00Z","payload":{"rows":[{"step":2},{"step":1}]}}`,
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
		!reflect.DeepEqual(fast.Payload, slow.Payload) {
		t.Fatalf("fast and encoding/json differ on %s:\nfast %s\nslow %s", b, fb, sb)
	}
}

// FuzzFastDecode: on any input the fast path accepts, it agrees with
// encoding/json.
func FuzzFastDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 20 {
		e, rows := randomMetrics(rng)
		b, _ := Encode(e)
		f.Add(b)
		v1, _ := encodeV1(e, MetricsLoggedV1{Rows: rows})
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastDecode(t, b) })
}
