package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
)

// baseline is what raw JetStream does on this machine, measured in the same
// run as the load.
type baseline struct {
	payloadBytes int     // one metrics event of -batch rows of -metrics values
	pubMsgs      float64 // async publish of such events, msgs/s
	pubBytes     float64 // the same in bytes/s
	pubPoints    float64 // the same in metric points/s
	syncP50      time.Duration
	syncP99      time.Duration // synchronous publish of a ~150 B event
	consumeMsgs  float64       // ordered-consumer read of what was published, msgs/s
	consumePts   float64
}

// sampleEvent is a metrics_logged event of rows rows of m metrics, as the
// log stores it (the current version: columns).
func sampleEvent(rows, m int, run string) events.Event {
	var b events.Builder
	names := metricNames(m)
	now := float64(time.Now().UnixNano()) / 1e9
	for i := range rows {
		b.Row(int64(i), now+float64(i)*1e-3)
		for _, k := range names {
			b.Value(k, rand.Float64())
		}
	}
	pl, err := b.Build()
	if err != nil {
		panic(err)
	}
	id := events.NewID(time.Now())
	return events.Event{ID: id, Type: events.MetricsLogged, Version: events.CurrentVersion(events.MetricsLogged), Entity: "loadgen",
		Project: "bench", Run: run, Actor: "loadgen", Time: time.Now().UTC(), Cause: id, Payload: pl}
}

func metricNames(m int) []string {
	out := make([]string, m)
	for i := range out {
		out[i] = "train/metric_" + strconv.Itoa(i)
	}
	return out
}

// measureBaseline runs its own embedded nats-server (file storage, like the
// all-in-one) and measures async publish of events of the load's size, sync
// publish latency of small events, and consuming.
func measureBaseline(ctx context.Context, c config) (*baseline, error) {
	dir, err := os.MkdirTemp("", "logbook-baseline-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	nc, js, err := bus.Connect(bus.ClientURL(ns), "loadgen-baseline")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	for _, name := range []string{"RAW", "SMALL"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"},
			Storage: jetstream.FileStorage, MaxMsgSize: bus.MaxPayload}); err != nil {
			return nil, err
		}
	}
	ev := sampleEvent(c.batch, c.metrics, "01JDX0000000000000000000AA")
	payload, err := events.Encode(ev)
	if err != nil {
		return nil, err
	}
	b := &baseline{payloadBytes: len(payload)}

	// Async publish for baseDuration, at most 4096 in flight.
	n := 0
	start := time.Now()
	// Bounded to 1 GiB so that the stream stays in the page cache.
	for time.Since(start) < c.baseDuration && ctx.Err() == nil && n*len(payload) < 1<<30 {
		for range 256 {
			if err := publishAsync(ctx, js, &nats.Msg{Subject: "RAW.ev.loadgen.bench.metrics_logged", Data: payload}); err != nil {
				return nil, fmt.Errorf("async publish: %w", err)
			}
			n++
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("async publish: acks did not arrive")
	}
	secs := time.Since(start).Seconds()
	b.pubMsgs = float64(n) / secs
	b.pubBytes = b.pubMsgs * float64(len(payload))
	b.pubPoints = b.pubMsgs * float64(c.batch*c.metrics)

	// Synchronous publish latency of a small event (what a run start pays
	// at least twice: proposal, then event).
	small := make([]byte, 150)
	for i := range small {
		small[i] = 'a' + byte(i%26)
	}
	lat := make([]time.Duration, 0, 1000)
	for i := 0; i < 1000 && ctx.Err() == nil; i++ {
		t := time.Now()
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "SMALL.x", Data: small}); err != nil {
			return nil, fmt.Errorf("sync publish: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	b.syncP50, b.syncP99 = percentile(lat, 50), percentile(lat, 99)

	// Consume everything published, without decoding.
	msgs, secs, err := rawRead(ctx, js, "RAW")
	if err != nil {
		return nil, err
	}
	b.consumeMsgs = float64(msgs) / secs
	b.consumePts = b.consumeMsgs * float64(c.batch*c.metrics)
	return b, nil
}

// publishAsync publishes m asynchronously; when too many publishes await
// their acknowledgement (nats.go refuses with "stalled with too many
// outstanding async published messages" once its stall wait has passed),
// it waits for the outstanding ones and tries again, as a writer limited by
// the server would.
func publishAsync(ctx context.Context, js jetstream.JetStream, m *nats.Msg) error {
	for {
		_, err := js.PublishMsgAsync(m)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return err
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// rawRead reads a whole stream through an ordered consumer in batches of
// 1,000 and returns the message count and the seconds it took.
func rawRead(ctx context.Context, js jetstream.JetStream, stream string) (int, float64, error) {
	start := time.Now()
	n := 0
	err := bus.Read(ctx, js, bus.ReadOptions{Stream: stream, Batch: 1000}, func(b []bus.Entry) error {
		n += len(b)
		return nil
	})
	return n, time.Since(start).Seconds(), err
}
