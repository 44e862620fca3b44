package projections

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// metricsLog is a deterministic log of runs with metric batches: sparse
// rows, NaN and ±Inf, batches of every size; v1 writes the metric events as
// old logs hold them (version 1, rows), otherwise Encode writes the
// current version.
func metricsLog(t *testing.T, v1 bool) []RawRecord {
	t.Helper()
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var log []RawRecord
	add := func(e events.Event, rows []events.Row) {
		e.ID = events.DerivedID("01JDX00000000000000000000P", len(log)+1)
		e.Actor = "alice"
		e.Time = t0.Add(time.Duration(len(log)) * time.Second)
		var data []byte
		var err error
		if rows != nil {
			data, err = encodeMetrics(e, rows, v1)
		} else {
			e.Type = e.Payload.EventType()
			e.Version = events.CurrentVersion(e.Type)
			data, err = events.Encode(e)
		}
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: data, Time: e.Time})
	}
	add(events.Event{Entity: "alice", Payload: events.UserCreatedV1{Username: "alice", Email: "alice@example.com"}}, nil)
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}}, nil)
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 1e-300, 3}
	for r := range 3 {
		id := "run" + strconv.Itoa(r)
		add(events.Event{Entity: "alice", Project: "p", Run: id, Payload: events.RunStartedV1{RunID: id, Name: id}}, nil)
		step := int64(0)
		for b := range 12 {
			rows := make([]events.Row, 1+b*b*5)
			for i := range rows {
				step += 1 + int64(i%3)
				v := map[string]events.Value{}
				for k := range 6 {
					if (i+k+b)%(k+1) == 0 { // sparse: metric k every k+1 rows
						v["m"+strconv.Itoa(k)] = events.Value(float64(step)*0.25 - float64(k))
					}
				}
				if i%17 == 3 {
					v["odd"] = events.Value(odd[(i+b)%len(odd)])
				}
				rows[i] = events.Row{Step: step, Time: 1795779452 + float64(step)/8, Values: v}
			}
			add(events.Event{Entity: "alice", Project: "p", Run: id}, rows)
		}
	}
	return log
}

// encodeMetrics encodes a metrics_logged event of rows: at version 1 as a
// JSON envelope around {"rows":[...]}, else with Encode.
func encodeMetrics(e events.Event, rows []events.Row, v1 bool) ([]byte, error) {
	if !v1 {
		e.Payload = events.MustRows(rows)
		e.Type, e.Version = events.MetricsLogged, events.CurrentVersion(events.MetricsLogged)
		return events.Encode(e)
	}
	payload, _ := events.AppendMetricsPayload(nil, events.MetricsLoggedV1{Rows: rows})
	return json.Marshal(map[string]any{"id": e.ID, "type": "metrics_logged", "v": 1, "entity": e.Entity, "project": e.Project,
		"run": e.Run, "actor": e.Actor, "time": e.Time, "payload": json.RawMessage(payload)})
}

// v1Digests are the digests of metricsLog(v1) folded by the row-by-row
// logMetrics before metrics_logged v2, per projection version (computed on
// main at 0bed59e for version 3, cc0ba76 for version 4). Folding by column
// must not change a byte of the read model; a later projection version
// changes the bytes on purpose (add its digest, from a v1 fold, here).
var v1Digests = map[int]string{
	3: "7d2740b96954e3ff88d119e4bcdd54d04febbf1616a06093829853959a6b373d",
	4: "99dd020426610a59b56079edcc2ec52ea29cc47af87cdbc94649f3d7531009cf",
}

// TestMetricsV1AndV2FoldAlike: a log of v1 metric events and the same data
// in v2 columns give the same read model, and the one the row-by-row fold
// gave.
func TestMetricsV1AndV2FoldAlike(t *testing.T) {
	ctx := context.Background()
	var digests [2]DigestInfo
	for i, v1 := range []bool{true, false} {
		s := mustOpen(t, Options{InMemory: true})
		log := metricsLog(t, v1)
		if _, err := s.ReplayTo(ctx, sliceSource(log, 5), 0, nil); err != nil {
			t.Fatal(err)
		}
		var err error
		if digests[i], err = s.Digest(); err != nil {
			t.Fatal(err)
		}
	}
	if digests[0] != digests[1] {
		t.Fatalf("v1 log %+v, v2 log %+v", digests[0], digests[1])
	}
	if want, ok := v1Digests[Version]; ok && digests[0].Digest != want {
		t.Fatalf("v1 log folds to %s, the row-by-row fold gave %s", digests[0].Digest, want)
	}
}
