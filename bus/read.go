package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one stored message of a stream.
type Entry struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time // when the stream stored it
}

// ReadOptions select what to read.
type ReadOptions struct {
	Stream string
	Filter string // subject filter; "" for all
	// Filters are more subject filters (with Filter, if set).
	Filters []string
	From    uint64 // first sequence to deliver (0 or 1 for the start)
	Batch   int    // largest batch handed to fn
	// Follow keeps reading new messages until ctx ends; otherwise reading
	// stops once the messages present at the start have been delivered.
	Follow bool
}

// Read delivers a stream's messages in order, in batches, to fn. An error
// from fn stops the read and is returned.
func Read(ctx context.Context, js jetstream.JetStream, o ReadOptions, fn func([]Entry) error) error {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if o.Filter != "" {
		cfg.FilterSubjects = []string{o.Filter}
	}
	cfg.FilterSubjects = append(cfg.FilterSubjects, o.Filters...)
	if o.From > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = o.From
	}
	cons, err := js.OrderedConsumer(ctx, o.Stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", o.Stream, err)
	}
	// An ordered consumer lingers on the server until it has been idle for
	// a while: delete it when done, so that many short reads (a refresh per
	// rejected proposal) never pile up to the per-stream consumer limit.
	defer deleteConsumer(js, o.Stream, cons)
	if !o.Follow {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.Stream, err)
		}
		if info.NumPending == 0 {
			return nil
		}
	}
	batch := make([]Entry, 0, o.Batch)
	sizer := FetchSizer{Max: o.Batch}
	n := min(o.Batch, 16) // messages per fetch: a few until their size is known
	for ctx.Err() == nil {
		wait := 500 * time.Millisecond
		msgs, err := cons.FetchNoWait(n)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.Stream, err)
		}
		batch = batch[:0]
		var pending uint64
		for m := range msgs.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", o.Stream, err)
			}
			batch = append(batch, Entry{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: md.Timestamp})
			pending = md.NumPending
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			return fmt.Errorf("read %s: %w", o.Stream, err)
		}
		if len(batch) == 0 {
			// Nothing ready: wait for more with a blocking fetch of one
			// message (returns as soon as one arrives).
			msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(wait))
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("read %s: %w", o.Stream, err)
			}
			for m := range msgs.Messages() {
				md, err := m.Metadata()
				if err != nil {
					return fmt.Errorf("read %s: %w", o.Stream, err)
				}
				batch = append(batch, Entry{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: md.Timestamp})
				pending = md.NumPending
			}
			if len(batch) == 0 {
				continue
			}
		}
		for _, e := range batch {
			sizer.See(len(e.Data))
		}
		n = sizer.N()
		if err := fn(batch); err != nil {
			return err
		}
		if !o.Follow && pending == 0 {
			return nil
		}
	}
	return ctx.Err()
}

// maxFetchBytes bounds what one fetch asks for. A fetch of more than the
// 64 MiB a connection may have pending overflows it: the consumer stalls,
// and what was dropped is delivered again (an ordered consumer resets and
// re-reads; a durable one redelivers after its ack wait, out of order).
// 1,000 events of 800 KB read ten times slower than 20 at a time.
const maxFetchBytes = 16 << 20

// FetchSizer sizes a pull consumer's fetches by the largest message seen so
// far (not the mean: a batch of small messages may be followed by large
// ones): at most max messages, and at most about 16 MiB of them.
type FetchSizer struct {
	Max     int // messages per fetch at most
	largest int
}

// See records the size of a fetched message.
func (f *FetchSizer) See(size int) { f.largest = max(f.largest, size) }

// N returns how many messages the next fetch should ask for.
func (f *FetchSizer) N() int {
	if f.largest == 0 {
		return f.Max
	}
	return max(1, min(f.Max, maxFetchBytes/f.largest))
}
