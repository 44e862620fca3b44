package events

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// benchMetrics returns a metrics_logged event of rows rows of m metrics
// each, with full-precision values, as the Go client logs them.
func benchMetrics(rows, m int) Event {
	names := make([]string, m)
	for i := range names {
		names[i] = "train/metric_" + strconv.Itoa(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rs := make([]Row, rows)
	t0 := float64(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano()) / 1e9
	for i := range rs {
		v := make(map[string]Value, m)
		for _, k := range names {
			v[k] = Value(rng.Float64())
		}
		rs[i] = Row{Step: int64(i), Time: t0 + float64(i)*0.0173, Values: v}
	}
	pl, err := FromRows(rs)
	if err != nil {
		panic(err)
	}
	return Event{ID: "01JDX00000000000000000000P", Type: MetricsLogged, Version: 2, Entity: "your-team-name",
		Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Actor: "alice",
		Time: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), Cause: "01JDX00000000000000000000P",
		Payload: pl}
}

// benchMetricsV1 is benchMetrics with the version 1 payload (rows).
func benchMetricsV1(rows, m int) (Event, MetricsLoggedV1) {
	e := benchMetrics(rows, m)
	return e, MetricsLoggedV1{Rows: e.Payload.(MetricsLoggedV2).Rows()}
}

// The baseline of each benchmark is encoding/json on the same data as a
// version 1 event (rows of maps: the codec before any fast path), reported
// as x-json (how many times faster).
//
//	go test ./events -run '^$' -bench . -benchmem

func BenchmarkEncodeMetrics(b *testing.B) {
	e, v1 := benchMetricsV1(1000, 20)
	data, _ := Encode(e)
	b.SetBytes(int64(len(data)))
	b.ReportMetric(0, "ns/op")
	ev1 := e
	ev1.Payload = v1
	base := measure(b, func() { _, _ = encodeJSON(ev1) })
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := Encode(e); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, base, 1000*20)
}

func BenchmarkDecodeMetrics(b *testing.B) {
	e, v1 := benchMetricsV1(1000, 20)
	data, _ := Encode(e)
	old, _ := encodeV1(e, v1)
	b.SetBytes(int64(len(data)))
	base := measure(b, func() { _, _ = decodeJSON(old) })
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, base, 1000*20)
}

// BenchmarkDecodeMetricsV1 decodes an old log's version 1 event (fast
// path, then rows into columns).
func BenchmarkDecodeMetricsV1(b *testing.B) {
	e, v1 := benchMetricsV1(1000, 20)
	data, _ := encodeV1(e, v1)
	b.SetBytes(int64(len(data)))
	base := measure(b, func() { _, _ = decodeJSON(data) })
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, base, 1000*20)
}

// BenchmarkParseRowsBody is the HTTP edge: a 1,000-row x 20-metric JSON
// log body read into columns (baseline: encoding/json into rows).
func BenchmarkParseRowsBody(b *testing.B) {
	_, v1 := benchMetricsV1(1000, 20)
	body, _ := AppendMetricsPayload(nil, v1)
	b.SetBytes(int64(len(body)))
	base := measure(b, func() {
		var p MetricsLoggedV1
		_ = json.Unmarshal(body, &p)
	})
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, ok, err := ParseRowsBody(body, 1); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
	report(b, start, base, 1000*20)
}

// BenchmarkParseBody is the HTTP edge for the binary columns the Go
// client sends (baseline: encoding/json of the same rows as JSON).
func BenchmarkParseBody(b *testing.B) {
	e, v1 := benchMetricsV1(1000, 20)
	body := e.Payload.(MetricsLoggedV2).AppendBody(nil)
	js, _ := AppendMetricsPayload(nil, v1)
	b.SetBytes(int64(len(body)))
	base := measure(b, func() {
		var p MetricsLoggedV1
		_ = json.Unmarshal(js, &p)
	})
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := ParseBody(body); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, base, 1000*20)
}

// BenchmarkBuildMetrics appends 1,000 rows of 20 values to a Builder and
// builds the batch (what an edge does after parsing).
func BenchmarkBuildMetrics(b *testing.B) {
	names := make([]string, 20)
	for i := range names {
		names[i] = "train/metric_" + strconv.Itoa(i)
	}
	var bl Builder
	start := time.Now()
	for b.Loop() {
		bl.Reset()
		for r := range 1000 {
			bl.Row(int64(r), 1795779452+float64(r))
			for k, n := range names {
				bl.Value(n, float64(r*k))
			}
		}
		if _, err := bl.Build(); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, 0, 1000*20)
}

func BenchmarkDecodeSmall(b *testing.B) {
	data, _ := Encode(samples[0])
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// measure returns the mean time of fn over a short run.
func measure(b *testing.B, fn func()) time.Duration {
	b.Helper()
	n := 0
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond {
		fn()
		n++
	}
	return time.Since(start) / time.Duration(n)
}

func report(b *testing.B, start time.Time, base time.Duration, points int) {
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(points)/per.Seconds(), "points/s")
	b.ReportMetric(float64(base)/float64(per), "x-json")
}

// encodeJSON and decodeJSON are the plain encoding/json codec: the baseline.
func encodeJSON(e Event) ([]byte, error) {
	p, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{ID: e.ID, Type: e.Payload.EventType(), Version: 1, Entity: e.Entity, Project: e.Project,
		Run: e.Run, Actor: e.Actor, Time: e.Time.UTC(), Cause: e.Cause, Payload: p})
}

func decodeJSON(b []byte) (Event, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, err
	}
	var p MetricsLoggedV1
	err := json.Unmarshal(env.Payload, &p)
	return Event{ID: env.ID, Type: env.Type, Payload: p}, err
}
