package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
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
	// Log receives the retries of transient failures (slog.Default() if
	// nil).
	Log *slog.Logger
}

// Read delivers a stream's messages in order, in batches, to fn. An error
// from fn stops the read and is returned as is.
//
// Read rides over failures that a retry can fix (see Transient): a lost
// server, a leader election, a consumer that vanished or skipped a
// message. It then waits (capped, jittered backoff) and reads on with a new
// consumer from the sequence after the last one handed to fn, so fn sees
// every message once and in order whatever fails in between. It returns
// any other error, and ctx.Err() once ctx ends.
func Read(ctx context.Context, js jetstream.JetStream, o ReadOptions, fn func([]Entry) error) error {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	r := &reader{js: js, o: o, fn: fn, next: max(o.From, 1), sizer: FetchSizer{Max: o.Batch}}
	retry := newRetrying(o.Log, "read "+o.Stream)
	for {
		done, err := r.run(ctx, retry)
		if done {
			return nil
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Transient(err) {
			return fmt.Errorf("read %s: %w", o.Stream, err)
		}
		if werr := retry.failed(ctx, err); werr != nil {
			return werr
		}
	}
}

// fnError carries an error of Read's callback.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// reader is one Read: where it is in the stream, and its current consumer.
type reader struct {
	js    jetstream.JetStream
	o     ReadOptions
	fn    func([]Entry) error
	next  uint64 // first sequence not yet handed to fn
	sizer FetchSizer
	batch []Entry
}

// readConsumerIdle is how long the server keeps a read's consumer once its
// reader stopped asking (a reader that died without deleting it).
const readConsumerIdle = 2 * time.Minute

// run reads with one consumer, created at r.next, until the read is done
// (done), ctx ends, or the consumer fails (err).
func (r *reader) run(ctx context.Context, retry *retrying) (done bool, err error) {
	cfg := jetstream.ConsumerConfig{
		Name:              "lb_read_" + nuid.Next(),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: readConsumerIdle,
	}
	if r.next > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = r.next
	}
	var filters []string
	if r.o.Filter != "" {
		filters = append(filters, r.o.Filter)
	}
	filters = append(filters, r.o.Filters...)
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := r.js.CreateOrUpdateConsumer(cctx, r.o.Stream, cfg)
	cancel()
	if err != nil {
		return false, err
	}
	// Delete the consumer when done (in the background: its server may be
	// the one that just went away), so that many short reads (a refresh
	// per rejected proposal) never pile up to the per-stream consumer
	// limit; the server drops a forgotten one after readConsumerIdle.
	defer func() { go deleteConsumer(r.js, r.o.Stream, cfg.Name) }()
	var pending uint64 // messages the consumer has after the last delivery
	if info := cons.CachedInfo(); info != nil {
		pending = info.NumPending
	}
	if !r.o.Follow && pending == 0 {
		retry.ok()
		return true, nil
	}
	var consSeq uint64      // the consumer's last delivery: a skip means a lost message
	n := min(r.o.Batch, 16) // messages per fetch: a few until their size is known
	if r.sizer.largest > 0 {
		n = r.sizer.N()
	}
	for ctx.Err() == nil {
		msgs, err := fetch(cons, n, pending)
		if err != nil {
			return false, err
		}
		pending, err = r.collect(msgs, &consSeq)
		if err != nil {
			return false, err
		}
		if len(r.batch) == 0 {
			// Nothing ready: wait for more with a blocking fetch of one
			// message (returns as soon as one arrives).
			msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return false, err
			}
			if pending, err = r.collect(msgs, &consSeq); err != nil {
				return false, err
			}
			if len(r.batch) == 0 {
				retry.ok()
				continue
			}
		}
		retry.ok()
		for _, e := range r.batch {
			r.sizer.See(len(e.Data))
		}
		n = r.sizer.N()
		r.next = r.batch[len(r.batch)-1].Seq + 1
		if err := r.fn(r.batch); err != nil {
			return false, fnError{err}
		}
		if !r.o.Follow && pending == 0 {
			return true, nil
		}
	}
	return false, ctx.Err()
}

// fetch asks for at most n of the pending messages, and at most
// maxFetchBytes of them: the server stops there. The count alone (n, from
// the largest message seen so far) let a read that began with small events
// (users, run starts) ask for 1,000 events of 785 KB: more than the server
// lets a connection have pending, so the read stalled in the
// one-message wait, idle (loadgen's raw read of 5M points: 15.5k points/s,
// 5 minutes) or lost deliveries and started over ("consumer skipped a
// message"). The messages asked for are pending, so the fetch does not
// wait for them; with none pending it asks for what is there now (at most
// one message).
func fetch(cons jetstream.Consumer, n int, pending uint64) (jetstream.MessageBatch, error) {
	if pending == 0 {
		return cons.FetchNoWait(1)
	}
	return cons.Fetch(int(min(uint64(n), pending)), jetstream.FetchMaxBytes(maxFetchBytes),
		jetstream.FetchMaxWait(5*time.Second))
}

// collect puts a fetch's messages into r.batch and returns the number of
// messages still pending after the last one. A message that does not
// follow the previous delivery (a message dropped in flight) is an error:
// the read goes on with a new consumer from the last one delivered.
func (r *reader) collect(msgs jetstream.MessageBatch, consSeq *uint64) (pending uint64, err error) {
	r.batch = r.batch[:0]
	for m := range msgs.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return 0, err
		}
		if md.Sequence.Consumer != *consSeq+1 || md.Sequence.Stream < r.next {
			r.batch = r.batch[:0]
			return 0, fmt.Errorf("%w: delivery %d after %d, stream sequence %d (expected at least %d)",
				errConsumerGap, md.Sequence.Consumer, *consSeq, md.Sequence.Stream, r.next)
		}
		*consSeq = md.Sequence.Consumer
		r.batch = append(r.batch, Entry{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: md.Timestamp})
		pending = md.NumPending
	}
	if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		r.batch = r.batch[:0]
		return 0, err
	}
	return pending, nil
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
