package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// Version is the projection version: bump it whenever the fold changes, and
// a read model written by another version is rebuilt from the log.
const Version = 4

// Key layout. Names cannot contain '/', metric keys can, so the metric part
// of a history key is separated by 0x00.
var (
	keySeq     = []byte("meta/seq")
	keyVersion = []byte("meta/version")
)

func userKey(name string) []byte           { return []byte("user/" + name) }
func keyHashKey(hash string) []byte        { return []byte("key/" + hash) }
func teamKey(name string) []byte           { return []byte("team/" + name) }
func projectKey(e, p string) []byte        { return []byte("proj/" + e + "/" + p) }
func runPrefix(e, p string) []byte         { return []byte("run/" + e + "/" + p + "/") }
func runKey(e, p, id string) []byte        { return []byte("run/" + e + "/" + p + "/" + id) }
func histProjectPrefix(e, p string) []byte { return []byte("hist/" + e + "/" + p + "/") }
func histRunPrefix(e, p, id string) []byte { return []byte("hist/" + e + "/" + p + "/" + id + "\x00") }
func linePrefix(e, p, id string) []byte    { return []byte("line/" + e + "/" + p + "/" + id + "\x00") }
func lineProjectPrefix(e, p string) []byte { return []byte("line/" + e + "/" + p + "/") }
func lineFilePrefix(e, p, id, file string) []byte {
	return []byte("line/" + e + "/" + p + "/" + id + "\x00" + file + "\x00")
}
func histMetricPrefix(e, p, id, metric string) []byte {
	return []byte("hist/" + e + "/" + p + "/" + id + "\x00" + metric + "\x00")
}

// ErrNotFound is returned for a missing user, project or run.
var ErrNotFound = errors.New("not found")

// ErrGap means the log skipped a sequence the projector expected: events
// would be lost, so the projector stops instead.
var ErrGap = errors.New("gap in the events stream")

// Store is the Badger read model.
type Store struct {
	db *badger.DB

	mu      sync.Mutex
	seq     uint64
	changed chan struct{} // closed and replaced whenever seq advances
	sparse  bool          // fed a filtered part of the log: gaps are expected
	// quarantine is the set of sequences replays skip (nil: none).
	quarantine QuarantineSet

	idxOnce sync.Once
	idx     *runIndex // runs of queried projects, kept current by Apply
}

// Options configure Open.
type Options struct {
	Dir string
	// SyncWrites makes every batch commit durable before it returns.
	SyncWrites bool
	InMemory   bool
	// Sparse stores are fed a filtered part of the log (time travel over
	// one project), so sequence gaps are expected rather than an error.
	Sparse bool
	// ReadOnly opens an existing read model for inspection (digest) only.
	ReadOnly bool
	// Quarantined, when set, says which sequences of the log Follow and
	// ReplayTo skip (quarantined by a site admin; see QuarantineSet).
	Quarantined QuarantineSet

	memTableSize int64 // tests: smaller memtables (and transactions)
}

// badgerOptions sizes Badger for the read model's workload: a single writer
// (the fold) committing transactions of a few MiB, values of at most a few
// tens of KiB (history chunks of 1,024 points, documents), reads that scan a
// metric's chunks. Badger's defaults are for a database whose memory is the
// machine's: five 64 MiB memtables, each flushed by building its whole L0
// table in memory (the table builder was 82% of the live heap), a 256 MiB
// block cache, every table's index and Bloom filter held in memory forever
// (so RSS grew with the points stored) and 1 GiB value-log files. Here:
//
//   - two 16 MiB memtables (Badger then refuses transactions past 2.4 MiB:
//     the fold commits before, see maxCachedDocs in fold.go), and L0 flushes
//     build 16 MiB tables;
//   - 32 KiB blocks: a history chunk (1,024 points, 3 to 10 KiB since
//     projection version 4, 24.6 KiB before) fits in one.
//     With 4 KiB blocks the table builder grew each block's buffer by
//     doubling for every chunk, keeping every step in its arena: building a
//     16 MiB L0 table held 240 MB (heap profile of loadgen);
//   - two compactors (the machine has few cores and the fold is the only
//     writer), 8 MiB tables on every level above L0 (TableSizeMultiplier 1:
//     a compaction runs up to 8 + splits table builders at once, each
//     starting with twice the table size, and with the default doubling per
//     level the deep levels' builders made RSS grow with the data; 4 MiB
//     tables cost a third of the throughput in msyncs of new tables);
//   - Snappy block compression kept (measured with version 3's 24 B points:
//     without it the read model took 36.9 instead of 25.6 B a point and
//     anonymous RSS was 1.5 instead of 2.1 GiB at 20M points), but the bigger tables did not fit the disk-full test's
//     reserve, and Badger writes new tables through mmap: on a full disk
//     that is a SIGBUS, not an error (TestDiskFull);
//   - a 32 MiB block cache and a 16 MiB index cache: indexes and Bloom
//     filters are loaded through the cache, so memory no longer grows with
//     the number of tables;
//   - 64 MiB value-log files (values above 1 MiB only; chunks stay in the LSM).
func badgerOptions(dir string) badger.Options {
	o := badger.DefaultOptions(dir)
	o.TableSizeMultiplier = 1 // no With method
	return o.WithLogger(nil).WithNumVersionsToKeep(1).WithMetricsEnabled(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockSize(32 << 10).
		WithBaseTableSize(8 << 20).
		WithNumCompactors(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20)
}

// Open opens (or creates) the read model in dir. A read model written by
// another projection version is wiped, so it is rebuilt from the log.
func Open(o Options) (*Store, error) {
	bo := badgerOptions(o.Dir).WithSyncWrites(o.SyncWrites)
	if o.memTableSize > 0 {
		bo = bo.WithMemTableSize(o.memTableSize)
	}
	if o.InMemory {
		bo = bo.WithInMemory(true).WithDir("").WithValueDir("")
	}
	if o.ReadOnly {
		bo = bo.WithReadOnly(true)
	}
	db, err := openDB(bo)
	if err != nil {
		return nil, fmt.Errorf("open read model in %s: %w", o.Dir, err)
	}
	s := &Store{db: db, changed: make(chan struct{}), sparse: o.Sparse, quarantine: o.Quarantined}
	var version uint64
	err = db.View(func(txn *badger.Txn) error {
		s.seq, err = getUint(txn, keySeq)
		if err != nil {
			return err
		}
		version, err = getUint(txn, keyVersion)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	if s.seq > 0 && version != Version && !o.ReadOnly {
		if err := db.DropAll(); err != nil {
			db.Close()
			return nil, fmt.Errorf("drop read model of projection version %d: %w", version, err)
		}
		s.seq = 0
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the underlying database (for digests and tools).
func (s *Store) DB() *badger.DB { return s.db }

// Seq returns the last applied stream sequence.
func (s *Store) Seq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// WaitSeq blocks until the read model has applied seq, or ctx ends.
func (s *Store) WaitSeq(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		cur, ch := s.seq, s.changed
		s.mu.Unlock()
		if cur >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("read model is at sequence %d, waiting for %d: %w", cur, seq, ctx.Err())
		case <-ch:
		}
	}
}

// Record is one event of the log with its stream sequence.
type Record struct {
	Seq   uint64
	Event events.Event
	// Skip marks a quarantined event: it is not folded, but the applied
	// sequence moves past it (so a replay that skips it has the same
	// checkpoint as any other).
	Skip bool
}

// Apply folds a batch of events, in stream order, into the read model, and
// records the last sequence in the same transaction. Records at or below the
// applied sequence are skipped; a record after a gap stops with ErrGap.
func (s *Store) Apply(batch []Record) error {
	s.mu.Lock()
	last := s.seq
	s.mu.Unlock()
	f := newFold(s.db)
	f.idx = s.index()
	n := 0
	for _, r := range batch {
		if r.Seq <= last {
			continue
		}
		if r.Seq != last+1 && !s.sparse {
			return fmt.Errorf("%w: expected sequence %d, got %d", ErrGap, last+1, r.Seq)
		}
		if r.Skip {
			last = r.Seq
			n++
			continue
		}
		if err := f.applyAt(r.Seq, r.Event); err != nil {
			return fmt.Errorf("fold event %s (seq %d): %w", r.Event.ID, r.Seq, err)
		}
		last = r.Seq
		n++
	}
	if n == 0 {
		return nil
	}
	if err := f.commit(last); err != nil {
		return err
	}
	s.mu.Lock()
	s.seq = last
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func getUint(txn *badger.Txn, key []byte) (uint64, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = it.Value(func(b []byte) error {
		if len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}

func putUint(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getJSON(txn *badger.Txn, key []byte, v any) error {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return it.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func stepKey(prefix []byte, step int64) []byte {
	return binary.BigEndian.AppendUint64(bytes.Clone(prefix), uint64(step))
}

func sortedStrings(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// RawRecord is an encoded event with its stream sequence.
type RawRecord struct {
	Seq  uint64
	Data []byte
	Time time.Time // when the log stored it
}

// Source delivers the log in order, in batches, starting at sequence from;
// it returns when ctx ends or fn fails (Follow) or when the log ends (a
// replay).
type Source func(ctx context.Context, from uint64, fn func([]RawRecord) error) error

// Follow decodes and applies the log from the store's next sequence on,
// reading and decoding ahead of the fold (see readAhead).
func (s *Store) Follow(ctx context.Context, src Source) error {
	sk, err := newSkipper(ctx, s.quarantine)
	if err != nil {
		return fmt.Errorf("read the quarantined sequences: %w", err)
	}
	return readAhead(ctx, src, s.Seq()+1, 0, func(d decoded) error {
		if err := d.skips(ctx, sk); err != nil {
			return err
		}
		return s.Apply(d.recs)
	})
}
