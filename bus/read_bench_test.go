package bus

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkReadLarge: Read of 300 events of 785 KB (cmd/loadgen's metric
// batches of 1,000 rows of 20 metrics), the rebuild's read of the log.
//
//	go test ./bus -run '^$' -bench ReadLarge -benchtime 3x
func BenchmarkReadLarge(b *testing.B) {
	ns, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir(), Port: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	nc, js, err := Connect(ClientURL(ns), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	if err := EnsureTopology(ctx, js, DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	const n, size = 300, 785_000
	data := make([]byte, size)
	for i := range n {
		if _, err := AppendAll(ctx, js, []Msg{{Subject: "lb.ev.a.p.metrics_logged", ID: fmt.Sprintf("m%d", i), Data: data}}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		got := 0
		start := time.Now()
		err := Read(ctx, js, ReadOptions{Stream: EventsStream, Batch: 1000}, func(batch []Entry) error {
			got += len(batch)
			return nil
		})
		if err != nil || got != n {
			b.Fatalf("read %d of %d: %v", got, n, err)
		}
		b.ReportMetric(float64(n*size)/time.Since(start).Seconds()/1e6, "MB/s")
	}
}
