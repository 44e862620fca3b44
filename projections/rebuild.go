package projections

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/logbook/logbook/events"
)

// openDB opens Badger, working around dgraph-io/badger#2207: a process
// killed between creating a memtable or value-log file and writing to it
// leaves an empty file, and Open then fails with z.NewFile ("Create a new
// file") although nothing is lost. Empty memtables hold nothing, so they are
// removed first; and Open is retried once (the failed attempt sized the
// file, so the second one succeeds).
func openDB(bo badger.Options) (*badger.DB, error) {
	if !bo.InMemory && !bo.ReadOnly {
		mems, _ := filepath.Glob(filepath.Join(bo.Dir, "*.mem"))
		for _, m := range mems {
			if fi, err := os.Stat(m); err == nil && fi.Size() == 0 {
				_ = os.Remove(m)
			}
		}
	}
	db, err := badger.Open(bo)
	for i := 0; i < 2 && err != nil && !bo.ReadOnly && strings.Contains(err.Error(), "Create a new file"); i++ {
		db, err = badger.Open(bo)
	}
	return db, err
}

// DigestInfo is a content hash of a read model: SHA-256 over every key and
// value in key order (each length-prefixed), the checkpoint and the
// projection version included. Two read models with the same digest hold
// the same bytes; a live read model and a replay of the log up to the same
// sequence have the same digest.
type DigestInfo struct {
	Digest  string `json:"digest"`
	Seq     uint64 `json:"seq"`
	Keys    int64  `json:"keys"`
	Bytes   int64  `json:"bytes"`
	Version int    `json:"version"`
}

// Digest hashes a consistent snapshot of the read model.
func (s *Store) Digest() (DigestInfo, error) {
	out := DigestInfo{Version: Version}
	h := sha256.New()
	var lenBuf [binary.MaxVarintLen64]byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if out.Seq, err = getUint(txn, keySeq); err != nil {
			return err
		}
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(k)))])
			h.Write(k)
			err := item.Value(func(v []byte) error {
				h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(v)))])
				h.Write(v)
				out.Bytes += int64(len(k) + len(v))
				return nil
			})
			if err != nil {
				return err
			}
			out.Keys++
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("digest read model: %w", err)
	}
	out.Digest = hex.EncodeToString(h.Sum(nil))
	return out, nil
}

// Progress reports how far a replay got: the last applied sequence and the
// number of events applied so far.
type Progress func(seq uint64, applied int64)

// ReplayTo folds the log from the store's next sequence up to and including
// sequence upTo (0: to the end of the log as it is when the replay starts)
// and returns the last applied sequence. It is how a rebuild and a
// verification fold the log; Follow is the live counterpart.
func (s *Store) ReplayTo(ctx context.Context, src Source, upTo uint64, progress Progress) (uint64, error) {
	var applied int64
	sk, err := newSkipper(ctx, s.quarantine)
	if err != nil {
		return s.Seq(), fmt.Errorf("read the quarantined sequences: %w", err)
	}
	err = readAhead(ctx, src, s.Seq()+1, upTo, func(d decoded) error {
		if err := d.skips(ctx, sk); err != nil {
			return err
		}
		if err := s.Apply(d.recs); err != nil {
			return err
		}
		applied += int64(len(d.recs))
		if progress != nil {
			progress(s.Seq(), applied)
		}
		return nil
	})
	if err != nil {
		return s.Seq(), err
	}
	if upTo > 0 && s.Seq() < upTo {
		return s.Seq(), fmt.Errorf("replay stopped at sequence %d, before %d", s.Seq(), upTo)
	}
	return s.Seq(), nil
}

// Read-model directories. The live read model of a projector lives in dir;
// a rebuild writes a fresh one next to it (dir+".new", or dir when the live
// one is dir+".new"), marked by a sibling file "<target>.rebuilding" until
// it has caught up. After the switch the old directory is renamed to
// dir+".old" and removed. PrepareDir repairs whatever a crash left behind.
const (
	newSuffix        = ".new"
	oldSuffix        = ".old"
	rebuildingSuffix = ".rebuilding"
)

// PrepareDir makes dir the one read-model directory to open, finishing or
// discarding a rebuild a crash interrupted: an unfinished rebuild is
// removed; a finished one that became live is moved to dir.
func PrepareDir(dir string) error {
	for _, d := range []string{dir, dir + newSuffix} {
		if _, err := os.Stat(d + rebuildingSuffix); err == nil {
			if err := os.RemoveAll(d); err != nil {
				return fmt.Errorf("remove unfinished rebuild: %w", err)
			}
			if err := os.Remove(d + rebuildingSuffix); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(dir + oldSuffix); err != nil {
		return fmt.Errorf("remove replaced read model: %w", err)
	}
	if _, err := os.Stat(dir + newSuffix); err != nil {
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		// Both are complete read models (the switch was interrupted
		// before the old one was moved away); keep dir.
		return os.RemoveAll(dir + newSuffix)
	}
	return os.Rename(dir+newSuffix, dir)
}

// RebuildTarget returns the directory a rebuild of the read model whose
// base directory is base, now live in current, writes to.
func RebuildTarget(base, current string) string {
	if current == base {
		return base + newSuffix
	}
	return base
}

// StartRebuild opens a fresh, empty read model in target, marked as
// unfinished until FinishRebuild.
func StartRebuild(target string, o Options) (*Store, error) {
	if o.InMemory {
		return Open(o)
	}
	if err := os.WriteFile(target+rebuildingSuffix, []byte("a rebuild is writing "+target+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("mark rebuild: %w", err)
	}
	if err := os.RemoveAll(target); err != nil {
		return nil, fmt.Errorf("clear rebuild directory: %w", err)
	}
	o.Dir = target
	return Open(o)
}

// FinishRebuild marks the read model in target as complete.
func FinishRebuild(target string) error {
	if target == "" {
		return nil // in memory
	}
	return os.Remove(target + rebuildingSuffix)
}

// AbandonRebuild removes an unfinished rebuild (its store closed).
func AbandonRebuild(target string) error {
	if target == "" {
		return nil
	}
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	return os.Remove(target + rebuildingSuffix)
}

// Retire removes a read-model directory that is no longer live (its store
// closed): it is renamed to base+".old" first, so that a crash never leaves
// half a read model under a live name.
func Retire(base, dir string) error {
	if err := os.RemoveAll(base + oldSuffix); err != nil {
		return err
	}
	if err := os.Rename(dir, base+oldSuffix); err != nil {
		return fmt.Errorf("retire read model %s: %w", dir, err)
	}
	return os.RemoveAll(base + oldSuffix)
}

// LogReader delivers the events matching subject filters, in order, in
// batches, starting at sequence 1, until the end of the log.
type LogReader func(ctx context.Context, filters []string, fn func([]RawRecord) error) error

// AsOf folds one project's events (and the entity-level events that users
// and teams come from) up to sequence seq (0: no bound) and stored at or
// before time t (zero: no bound) into an in-memory read model: the project
// as it was then. Close the returned store when done.
func AsOf(ctx context.Context, read LogReader, subj events.Subjects, entity, project string, seq uint64, t time.Time) (*Store, error) {
	st, err := Open(Options{InMemory: true, Sparse: true})
	if err != nil {
		return nil, err
	}
	errDone := errors.New("done")
	recs := make([]Record, 0, 1024)
	sk, err := newSkipper(ctx, Quarantined(read, subj))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("read the quarantined sequences: %w", err)
	}
	err = read(ctx, []string{subj.Aggregate(entity, project), subj.EntityEvents()}, func(batch []RawRecord) error {
		recs = recs[:0]
		stop := false
		for _, r := range batch {
			if (seq > 0 && r.Seq > seq) || (!t.IsZero() && r.Time.After(t)) {
				stop = true
				break
			}
			e, derr := events.Decode(r.Data)
			skip, err := sk.check(ctx, r.Seq, derr)
			if err != nil {
				return err
			}
			recs = append(recs, Record{Seq: r.Seq, Event: e, Skip: skip})
		}
		if err := st.Apply(recs); err != nil {
			return err
		}
		if stop {
			return errDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		st.Close()
		return nil, fmt.Errorf("replay %s/%s: %w", entity, project, err)
	}
	return st, nil
}

// LiveDir is the directory holding the complete read model of base: base,
// or base.new when a rebuild made that one live (until the next start
// moves it back to base). Tools pointed at base follow it.
func LiveDir(base string) string {
	if _, err := os.Stat(filepath.Join(base, "MANIFEST")); err == nil {
		if _, err := os.Stat(base + rebuildingSuffix); err != nil {
			return base
		}
	}
	n := base + newSuffix
	if _, err := os.Stat(filepath.Join(n, "MANIFEST")); err == nil {
		if _, err := os.Stat(n + rebuildingSuffix); err != nil {
			return n
		}
	}
	return base
}
