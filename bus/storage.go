package bus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Disk full. When the disk under a nats-server's store runs out, a write
// fails inside the file store with "no space left on device": the server
// does not answer the publisher (it times out) and the stream keeps the
// write error until the server restarts. So the embedded server must refuse
// writes before the disk is full: StorageGuard keeps the JetStream storage
// limit of Logbook's account at what it stores now plus half of the data
// directory's free space above a reserve, re-read every second. JetStream
// then answers a write that does not fit at once with "resource limits
// exceeded for account" (ErrStorageFull), and accepts writes again within
// a second of space coming back. The reserve is for what shares the disk
// and is not counted by JetStream: the read model (Badger), the stores'
// indexes, the log. A separate nats-server needs the same by configuration:
// a jetstream max_file_store below its disk's size.

// DefaultStorageReserve is the free space StorageGuard keeps on a disk of
// size bytes: 5% of it, at least 128 MiB (the read model's Badger flushes
// memtables of up to 64 MiB, and its memtable is a memory-mapped file: a
// write into it on a full disk kills the process with SIGBUS) and at most
// 1 GiB; on a disk under 512 MiB a quarter of it.
func DefaultStorageReserve(size int64) int64 {
	return min(max(size/20, 128<<20), 1<<30, size/4)
}

// StorageGuard keeps an embedded server's JetStream storage limit below the
// free space of its data directory (see above).
type StorageGuard struct {
	Server  *server.Server
	Account string // the account whose streams are limited ("" = the global account)
	Dir     string // a directory on the disk of the store
	// Reserve is the free space to keep (DefaultStorageReserve of the
	// disk's size if zero).
	Reserve int64
	Log     *slog.Logger

	last int64
	full bool
}

// Run checks every interval until ctx ends.
func (g *StorageGuard) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := g.Check(); err != nil && g.Log != nil {
				g.Log.Warn("storage guard", "err", err)
			}
		}
	}
}

// Check sets the limit once from the current free space.
func (g *StorageGuard) Check() error {
	free, size, ok := spaceOf(g.Dir)
	if !ok {
		return nil
	}
	acc := g.Server.GlobalAccount()
	if g.Account != "" {
		var err error
		if acc, err = g.Server.LookupAccount(g.Account); err != nil {
			return fmt.Errorf("account %s: %w", g.Account, err)
		}
	}
	usage := acc.JetStreamUsage()
	if len(usage.Tiers) > 0 {
		return nil // tiered limits set by configuration: leave them
	}
	reserve := g.Reserve
	if reserve <= 0 {
		reserve = DefaultStorageReserve(size)
	}
	limit := int64(usage.Store) + max(0, (free-reserve)/2)
	if limit == g.last {
		return nil
	}
	lim := usage.Limits
	lim.MaxStore = limit
	if err := acc.UpdateJetStreamLimits(map[string]server.JetStreamAccountLimits{"": lim}); err != nil {
		return fmt.Errorf("set the JetStream storage limit to %d bytes: %w", limit, err)
	}
	g.last = limit
	full := free-reserve < 2<<20 // under 1 MiB of room for JetStream
	if full != g.full && g.Log != nil {
		if full {
			g.Log.Error("the disk of the data directory is full: writes are refused (507 storage_full) until space is freed; reads go on",
				"dir", g.Dir, "free", free, "reserve", reserve)
		} else {
			g.Log.Info("disk space is back: writes are accepted again", "dir", g.Dir, "free", free)
		}
	}
	g.full = full
	return nil
}

// spaceOf is diskSpace of dir, or of its nearest existing parent.
func spaceOf(dir string) (free, size int64, ok bool) {
	for dir = filepath.Clean(dir); ; dir = filepath.Dir(dir) {
		if free, size, ok = diskSpace(dir); ok || dir == filepath.Dir(dir) {
			return free, size, ok
		}
	}
}
