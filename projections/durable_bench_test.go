package projections

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkApplyDurability measures what durable mode (Badger SyncWrites:
// fsync at every batch commit) costs the projector, folding the test log in
// batches of 100 events; ns/op is per event:
//
//	go test ./projections -run '^$' -bench ApplyDurability
func BenchmarkApplyDurability(b *testing.B) {
	log := testLog(&testing.T{}, 20, 50)
	for _, sync := range []bool{false, true} {
		name := "default"
		if sync {
			name = "sync_writes"
		}
		b.Run(name, func(b *testing.B) {
			applied := 0
			for applied < b.N {
				b.StopTimer()
				s, err := Open(Options{Dir: filepath.Join(b.TempDir(), "rm"), SyncWrites: sync})
				if err != nil {
					b.Fatal(err)
				}
				n := min(len(log), b.N-applied)
				b.StartTimer()
				if _, err := s.ReplayTo(context.Background(), sliceSource(log[:n], 100), 0, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				applied += n
			}
		})
	}
}
