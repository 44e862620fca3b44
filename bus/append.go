package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
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
		case errCodeBatchDuplicate:
			return fmt.Errorf("%w (%s)", ErrAlreadyAppended, apiErr.Description)
		}
	}
	return err
}

// ErrAlreadyAppended means an atomic batch was refused because its messages
// are already in the stream (their Nats-Msg-Ids are within the duplicate
// window): an earlier attempt committed it.
var ErrAlreadyAppended = errors.New("append: the batch is already in the stream")

// Conn is what an atomic batch append needs of NATS: core publishes for the
// batch and a request for its commit.
type Conn interface {
	PublishMsg(m *nats.Msg) error
	RequestMsgWithContext(ctx context.Context, m *nats.Msg) (*nats.Msg, error)
}

// JetStream's atomic batch publish headers (nats-server 2.12+, ADR-50); the
// nats.go jetstream package has no API for them yet.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
	// MaxBatch is the largest atomic batch the server accepts by default.
	MaxBatch = 1000
	// errCodeBatchDuplicate: "atomic publish batch contains duplicate
	// message id" (JSAtomicPublishContainsDuplicateMessageErr).
	errCodeBatchDuplicate jetstream.ErrorCode = 10201
)

// AppendBatch appends msgs atomically: the stream stores all of them, in
// order and at consecutive sequences, or none. Each message keeps its own
// Nats-Msg-Id and optimistic-concurrency expectation (checked against the
// stream before any of the batch is stored). A commit that may have been
// lost is retried as a new batch with the same message ids until ctx ends;
// ErrAlreadyAppended then reports that an earlier attempt committed it.
// It returns the stream sequence of each message.
func AppendBatch(ctx context.Context, nc Conn, msgs []Msg) ([]uint64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(msgs) > MaxBatch {
		return nil, fmt.Errorf("append batch of %d messages: at most %d fit in one atomic batch", len(msgs), MaxBatch)
	}
	backoff := 20 * time.Millisecond
	for {
		seqs, err := appendBatchOnce(ctx, nc, msgs)
		if err == nil || errors.Is(err, ErrConflict) || errors.Is(err, ErrAlreadyAppended) {
			return seqs, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("append batch to %s: %w (last error: %v)", msgs[0].Subject, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func appendBatchOnce(ctx context.Context, nc Conn, msgs []Msg) ([]uint64, error) {
	id := nuid.Next()
	for i, m := range msgs {
		nm := m.natsMsg()
		nm.Header.Set(jetstream.MsgIDHeader, m.ID)
		if m.ExpectSubject != "" {
			nm.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(m.ExpectSeq, 10))
			nm.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, m.ExpectSubject)
		}
		nm.Header.Set(hdrBatchID, id)
		nm.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(nm); err != nil {
				return nil, err
			}
			continue
		}
		nm.Header.Set(hdrBatchCommit, "1")
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := nc.RequestMsgWithContext(rctx, nm)
		cancel()
		if err != nil {
			return nil, err
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Count int    `json:"count"`
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     uint16 `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return nil, fmt.Errorf("batch commit: undecodable answer %q", reply.Data)
		}
		if ack.Error != nil {
			return nil, mapError(&jetstream.APIError{Code: ack.Error.Code, ErrorCode: jetstream.ErrorCode(ack.Error.ErrCode), Description: ack.Error.Description})
		}
		if ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)) {
			return nil, fmt.Errorf("batch commit: stored %d of %d messages at seq %d", ack.Count, len(msgs), ack.Seq)
		}
		// A committed batch is stored at consecutive sequences.
		seqs := make([]uint64, len(msgs))
		for j := range seqs {
			seqs[j] = ack.Seq - uint64(len(msgs)-1-j)
		}
		return seqs, nil
	}
	panic("unreachable")
}
