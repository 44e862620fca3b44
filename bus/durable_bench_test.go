package bus

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAppendDurability measures what durable mode (JetStream
// sync_interval: always) costs on the two append paths: one synchronous,
// conditional append at a time (control events) and batches of 1,000
// asynchronous appends (metric batches). Compare the ns/op of the default
// and sync_always sub-benchmarks:
//
//	go test ./bus -run '^$' -bench AppendDurability -benchtime 2000x
func BenchmarkAppendDurability(b *testing.B) {
	data := make([]byte, 512)
	for _, durable := range []bool{false, true} {
		name := "default"
		if durable {
			name = "sync_always"
		}
		ns, err := StartEmbedded(EmbeddedOptions{Dir: b.TempDir(), Port: -1, SyncAlways: durable})
		if err != nil {
			b.Fatal(err)
		}
		nc, js, err := Connect(ClientURL(ns), "bench")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := EnsureTopology(ctx, js, DefaultConfig()); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/sync", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Append(ctx, js, Msg{Subject: "lb.ev.a.p.run_started", ID: fmt.Sprintf("s%s%d", name, i), Data: data}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/batch1000", func(b *testing.B) {
			msgs := make([]Msg, 0, 1000)
			for i := 0; i < b.N; i++ {
				msgs = append(msgs, Msg{Subject: "lb.ev.a.p.metrics_logged", ID: fmt.Sprintf("b%s%d", name, i), Data: data})
				if len(msgs) == cap(msgs) || i == b.N-1 {
					if _, err := AppendAll(ctx, js, msgs); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[:0]
				}
			}
		})
		nc.Close()
		ns.Shutdown()
	}
}
