package projections

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/par"
)

// The read-ahead pipeline of Follow and ReplayTo. Reading a batch of the
// log, decoding it and folding it used to take turns: while the fold wrote
// (one core), the read waited, and the decoding (every core) waited for
// both. Now three goroutines overlap them:
//
//	read (src) --raw--> decode (par.Do) --decoded--> fold (the caller)
//
// Each channel holds at most aheadBatches batches, so the read stays a few
// fetches ahead of the fold and memory stays bounded (a fetch is at most
// 16 MiB, see bus.Read). The fold still sees every batch in log order:
// only pure work (the read and events.Decode) runs ahead of it.
const aheadBatches = 2

// decoded is a batch of the log, decoded: recs[i].Event is valid when
// errs[i] is nil. Skip is not set yet (the skipper decides it in order).
type decoded struct {
	recs []Record
	errs []error
}

// errEnough stops a source once the batch holding the last wanted
// sequence is read.
var errEnough = errors.New("read enough")

// readAhead reads src from sequence from, decodes each batch on every core
// ahead of the fold, and calls apply with the batches in log order.
// Records after upTo (when upTo > 0) are dropped and the read stops there.
// It returns when src ends, ctx ends or apply fails (with apply's error).
func readAhead(ctx context.Context, src Source, from, upTo uint64, apply func(decoded) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raw := make(chan []RawRecord, aheadBatches)
	out := make(chan decoded, aheadBatches)
	readErr := make(chan error, 1)
	go func() {
		defer close(raw)
		readErr <- read(ctx, src, from, upTo, raw)
	}()
	var cut bool // the decoder stopped before the end of the read
	go func() {
		defer close(out)
		for batch := range raw {
			select {
			case out <- decodeBatch(batch):
			case <-ctx.Done():
				cut = true
				return
			}
		}
	}()
	for d := range out {
		if err := apply(d); err != nil {
			cancel()
			for range out {
				// let the decoder and the reader see the cancellation
			}
			<-readErr
			return err
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if cut { // out is closed: cut is set
		return ctx.Err()
	}
	return nil
}

// read sends src's batches, from sequence from and up to upTo (0: no
// bound), to raw. The source may reuse its batch slice once fn returns, so
// each batch is copied (the records, not their data: a source hands every
// record its own bytes).
func read(ctx context.Context, src Source, from, upTo uint64, raw chan<- []RawRecord) error {
	err := src(ctx, from, func(batch []RawRecord) error {
		n := len(batch)
		if upTo > 0 {
			n, _ = slices.BinarySearchFunc(batch, upTo+1, func(r RawRecord, seq uint64) int { return cmp.Compare(r.Seq, seq) })
		}
		if n > 0 {
			select {
			case raw <- slices.Clone(batch[:n]):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if upTo > 0 && (n < len(batch) || (n > 0 && batch[n-1].Seq >= upTo)) {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

// decodeBatch decodes a batch on every core (decoding is pure and costs
// more than folding).
func decodeBatch(batch []RawRecord) decoded {
	d := decoded{recs: make([]Record, len(batch)), errs: make([]error, len(batch))}
	par.Do(len(batch), func(i int) {
		d.recs[i].Seq = batch[i].Seq
		d.recs[i].Event, d.errs[i] = events.Decode(batch[i].Data)
	})
	return d
}

// skips marks the quarantined records of d (see skipper); any other record
// that could not be decoded stops with an events.UnreadableError.
func (d decoded) skips(ctx context.Context, sk *skipper) error {
	for i, derr := range d.errs {
		skip, err := sk.check(ctx, d.recs[i].Seq, derr)
		if err != nil {
			return err
		}
		d.recs[i].Skip = skip
	}
	return nil
}
