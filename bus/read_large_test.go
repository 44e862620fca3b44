package bus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestReadSmallThenLarge: a read whose first events are small and the next
// ones large (a log's users and run starts, then metric batches) gets every
// event once, in order, without a lost delivery or a retry: its fetches ask
// for at most maxFetchBytes, not for as many large events as small ones
// fitted (120 MB asked at once stalled the read or lost deliveries).
func TestReadSmallThenLarge(t *testing.T) {
	ns, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, js, err := Connect(ClientURL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	if err := EnsureTopology(ctx, js, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	const small, large, size = 50, 120, 1 << 20
	big := bytes.Repeat([]byte("x"), size)
	for i := range small + large {
		data := []byte(fmt.Sprint(i))
		if i >= small {
			data = append(data, big...)
		}
		if _, err := AppendAll(ctx, js, []Msg{{Subject: "lb.ev.a.p.x", ID: fmt.Sprintf("m%d", i), Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	var logged bytes.Buffer
	got := 0
	err = Read(ctx, js, ReadOptions{Stream: EventsStream, Batch: 1000, Log: slog.New(slog.NewTextHandler(&logged, nil))}, func(b []Entry) error {
		for _, e := range b {
			if want := fmt.Sprint(got); !strings.HasPrefix(string(e.Data), want) || e.Seq != uint64(got+1) {
				return fmt.Errorf("entry %d (seq %d) is %.10q, want %q", got, e.Seq, e.Data, want)
			}
			got++
		}
		return nil
	})
	if err != nil || got != small+large {
		t.Fatalf("read %d of %d events: %v", got, small+large, err)
	}
	if logged.Len() > 0 {
		t.Errorf("the read retried:\n%s", logged.String())
	}
}
