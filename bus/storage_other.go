//go:build !linux

package bus

// diskSpace is not implemented here: StorageGuard does nothing and the
// server's own limit (75% of the disk at start) applies.
func diskSpace(dir string) (free, size int64, ok bool) { return 0, 0, false }
