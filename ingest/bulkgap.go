package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
)

// A run's metric batches must be decided in the order the bulk lane stored
// them: rows at or below a run's last step are dropped as re-sent. JetStream
// delivers the lane in stream order, but a batch delivered to a pull request
// that expired while the batch was on its way (a starved machine) is
// delivered again only after the ack wait, behind its run's newer batches,
// and its rows would then be lost (README, Performance, round 2).
//
// The lane's first deliveries come in stream order, so such a loss shows as
// a gap in the stream sequences the decider receives. Before deciding a
// batch that follows a gap, the decider reads the missing sequences from
// the stream: those still waiting (not acknowledged by anyone) are decided
// first and removed, as takeOver does. Deciding is idempotent: when the
// lost delivery comes back it is a duplicate. With several ingest processes
// each sees the others' batches as gaps and may decide them too: more
// work, the same log.

// maxGap bounds the sequences read after one gap; a larger one (a decider
// that started behind others) is left to the ack wait.
const maxGap = 256

// fillBulkGap decides, before the bulk batch m, the batches the lane
// stored between the last one this decider received and m that are still
// waiting. pend (metric events decided before m, not yet appended) is
// appended first.
func (d *Decider) fillBulkGap(ctx context.Context, m inbound, pend *pendingMetrics) error {
	jm, ok := m.(jetstream.Msg)
	if !ok {
		return nil // taken over: read from the stream in order already
	}
	md, err := jm.Metadata()
	if err != nil || md.Stream != bus.BulkStream || md.NumDelivered > 1 {
		return nil
	}
	from, to := d.lastBulk+1, md.Sequence.Stream
	d.lastBulk = max(d.lastBulk, to)
	if to <= from || to-from > maxGap {
		return nil
	}
	stream, err := d.bulkStream(ctx)
	if err != nil {
		return err
	}
	for seq := from; seq < to; seq++ {
		if d.decidedBulk.has(seq) {
			continue
		}
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // decided and acknowledged
		}
		if err != nil {
			return fmt.Errorf("bulk lane: %w", err)
		}
		d.log.Warn("deciding a metric batch whose delivery was lost, before the batches after it", "seq", seq, "subject", raw.Subject)
		if err := d.flush(ctx, pend); err != nil {
			return err
		}
		d.decidedBulk.add(seq)
		if err := d.decideTakenOver(ctx, stream, []inbound{stored{raw}}); err != nil {
			return err
		}
	}
	return nil
}

// bulkStream is the bulk lane's stream, looked up once.
func (d *Decider) bulkStream(ctx context.Context) (jetstream.Stream, error) {
	if d.bulkLane != nil {
		return d.bulkLane, nil
	}
	s, err := d.js.Stream(ctx, bus.BulkStream)
	if err != nil {
		return nil, fmt.Errorf("bulk lane: %w", err)
	}
	d.bulkLane = s
	return s, nil
}

// noteDecided records that the bulk batch m is decided (being decided now,
// or refused before it is), by its stream sequence, for fillBulkGap.
func (d *Decider) noteDecided(m inbound) {
	if jm, ok := m.(jetstream.Msg); ok {
		if md, err := jm.Metadata(); err == nil && md.Stream == bus.BulkStream {
			d.decidedBulk.add(md.Sequence.Stream)
		}
	}
}

// recentSeqs remembers the last len(ring) sequences added.
type recentSeqs struct {
	set  map[uint64]bool
	ring [4096]uint64
	next int
}

func (r *recentSeqs) add(seq uint64) {
	if r.set == nil {
		r.set = make(map[uint64]bool, len(r.ring))
	}
	delete(r.set, r.ring[r.next])
	r.ring[r.next] = seq
	r.next = (r.next + 1) % len(r.ring)
	r.set[seq] = true
}

func (r *recentSeqs) has(seq uint64) bool { return r.set[seq] }

// drainBulkStored is drainBulk while the decider takes over what a crashed
// one left, before its lanes run: the batches of the run (filter) stored
// before at are read from the stream, decided and removed, oldest first.
func (d *Decider) drainBulkStored(ctx context.Context, stream jetstream.Stream, filter string, at time.Time) error {
	for from := uint64(1); ; {
		raw, err := stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bulk lane: %w", err)
		}
		if !raw.Time.Before(at) {
			return nil
		}
		from = raw.Sequence + 1
		if err := d.decideTakenOver(ctx, stream, []inbound{stored{raw}}); err != nil {
			return err
		}
	}
}
