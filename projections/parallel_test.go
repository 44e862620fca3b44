package projections

import (
	"path/filepath"
	"testing"
)

func decodeAll(t *testing.T, log []RawRecord) []Record {
	t.Helper()
	recs := make([]Record, len(log))
	for i, r := range log {
		recs[i] = Record{Seq: r.Seq, Event: mustDecode(t, r.Data)}
	}
	return recs
}

// TestParallelFoldDigest: folding stretches of metric batches with one
// worker per run gives the read model of folding the events one by one
// (Apply of one event at a time never has a stretch), whatever the batch
// boundaries, with transactions small enough that workers overflow.
func TestParallelFoldDigest(t *testing.T) {
	log := richLog(t)
	recs := decodeAll(t, log)
	want := sequentialFold(t, log, 1)
	for _, o := range []Options{{}, {memTableSize: 8 << 20}} {
		for _, size := range []int{5, 64, 1000} {
			o.Dir = filepath.Join(t.TempDir(), "parallel")
			s := mustOpen(t, o)
			before := parallelStretches.Load()
			for i := 0; i < len(recs); i += size {
				if err := s.Apply(recs[i:min(i+size, len(recs))]); err != nil {
					t.Fatal(err)
				}
			}
			if parallelStretches.Load() == before {
				t.Fatalf("batches of %d: no stretch folded in parallel", size)
			}
			if got := digest(t, s); got != want {
				t.Errorf("batches of %d, memtable %d: %+v, one by one %+v", size, o.memTableSize, got, want)
			}
		}
	}
}

// TestParallelFoldCrash: the workers of a stretch committed their history
// but the process died before the documents and the sequence were
// committed; folding the stretch again from the stored sequence gives the
// read model of an uninterrupted fold.
func TestParallelFoldCrash(t *testing.T) {
	log := richLog(t)
	recs := decodeAll(t, log)
	want := sequentialFold(t, log, 1)
	s := mustOpen(t, Options{Dir: t.TempDir(), memTableSize: 8 << 20})
	crashed := 0
	for i := 0; i < len(recs); {
		// Fold up to the next stretch one by one.
		n, groups := metricStretch(recs[i:])
		if groups == nil {
			if err := s.Apply(recs[i : i+1]); err != nil {
				t.Fatal(err)
			}
			i++
			continue
		}
		// Its workers commit, the documents and the sequence do not.
		f := newFold(s.db)
		if k, _, err := f.foldParallel(recs[i:]); err != nil || k != n {
			t.Fatalf("parallel fold of %d events: %d, %v", n, k, err)
		}
		f.txn.Discard()
		crashed++
		if s.Seq() != recs[i].Seq-1 {
			t.Fatalf("sequence %d after a crashed stretch from %d", s.Seq(), recs[i].Seq)
		}
		// Restart: the stretch is folded again (in parallel).
		if err := s.Apply(recs[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	if crashed == 0 {
		t.Fatal("no stretch to crash in")
	}
	if got := digest(t, s); got != want {
		t.Fatalf("after %d crashed stretches: %+v, uninterrupted %+v", crashed, got, want)
	}
}
