package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict means an optimistic-concurrency check failed: the aggregate got
// a new event since the sequence the writer expected.
var ErrConflict = errors.New("append conflict: the project changed concurrently")

// Msg is one message to append to a stream.
type Msg struct {
	Subject string
	ID      string // Nats-Msg-Id: a retried publish is stored once
	Data    []byte
	// When ExpectSubject is set, the append succeeds only if the last message
	// on subjects matching ExpectSubject is at sequence ExpectSeq.
	ExpectSubject string
	ExpectSeq     uint64
}

func (m Msg) natsMsg() *nats.Msg {
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
}

func (m Msg) opts() []jetstream.PublishOpt {
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
	if m.ExpectSubject != "" {
		opts = append(opts, jetstream.WithExpectLastSequenceForSubject(m.ExpectSeq, m.ExpectSubject))
	}
	return opts
}

// Publisher is what appending needs of JetStream.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Append publishes m and waits for the stream's ack, retrying with the same
// Nats-Msg-Id until ctx ends: a plain core publish would be lost silently when
// a server fails over. It returns the stream sequence (the original one when
// the message was a duplicate).
func Append(ctx context.Context, p Publisher, m Msg) (uint64, error) {
	backoff := 20 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := p.PublishMsg(actx, m.natsMsg(), m.opts()...)
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if err = mapError(err); errors.Is(err, ErrConflict) {
			return 0, err
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("append %s: %w (last error: %v)", m.Subject, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// AppendAll publishes msgs asynchronously, in order, and waits for every ack;
// failed ones are retried synchronously with their Nats-Msg-Id. It returns
// the stream sequence of each message.
func AppendAll(ctx context.Context, p Publisher, msgs []Msg) ([]uint64, error) {
	seqs := make([]uint64, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.PublishMsgAsync(m.natsMsg(), m.opts()...)
		if err == nil {
			futures[i] = f
		}
	}
	for i, f := range futures {
		if f != nil {
			select {
			case ack := <-f.Ok():
				seqs[i] = ack.Sequence
				continue
			case err := <-f.Err():
				if errors.Is(mapError(err), ErrConflict) {
					return nil, ErrConflict
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		seq, err := Append(ctx, p, msgs[i])
		if err != nil {
			return nil, err
		}
		seqs[i] = seq
	}
	return seqs, nil
}

// mapError maps JetStream errors to this package's sentinels.
func mapError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("%w (%s)", ErrConflict, apiErr.Description)
		}
	}
	return err
}
