package projections

import (
	"context"

	"github.com/logbook/logbook/events"
)

// QuarantineSet returns the stream sequences every replayer skips: those
// named by the event_quarantined events of the log, each covering only an
// earlier sequence than its own. A replayer loads it before it starts and
// again when it meets an event it cannot read (the quarantine may have
// been decided since).
type QuarantineSet func(ctx context.Context) (map[uint64]bool, error)

// Quarantined reads the quarantine decisions of the log through read (a
// filtered read of subj.Quarantines()).
func Quarantined(read LogReader, subj events.Subjects) QuarantineSet {
	return func(ctx context.Context) (map[uint64]bool, error) {
		set := map[uint64]bool{}
		err := read(ctx, []string{subj.Quarantines()}, func(batch []RawRecord) error {
			for _, r := range batch {
				e, err := events.Decode(r.Data)
				if err != nil {
					continue // a quarantine no one can read quarantines nothing
				}
				if q, ok := e.Payload.(events.EventQuarantinedV1); ok && q.Seq < r.Seq {
					set[q.Seq] = true
				}
			}
			return nil
		})
		return set, err
	}
}

// skipper decides, the same way in every replay, which records are
// skipped: the quarantined ones. Any other record that cannot be decoded
// stops the replay with an events.UnreadableError.
type skipper struct {
	load QuarantineSet
	set  map[uint64]bool
}

func newSkipper(ctx context.Context, load QuarantineSet) (*skipper, error) {
	k := &skipper{load: load}
	if load == nil {
		return k, nil
	}
	var err error
	k.set, err = load(ctx)
	return k, err
}

// check returns whether the record at seq is skipped, given the error of
// decoding it (nil if it decoded).
func (k *skipper) check(ctx context.Context, seq uint64, decodeErr error) (bool, error) {
	if k.set[seq] {
		return true, nil
	}
	if decodeErr == nil {
		return false, nil
	}
	if k.load != nil {
		set, err := k.load(ctx)
		if err != nil {
			return false, err
		}
		k.set = set
		if set[seq] {
			return true, nil
		}
	}
	return false, &events.UnreadableError{Seq: seq, Err: decodeErr}
}
