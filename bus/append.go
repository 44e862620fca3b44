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

// Msg is one message to append to a stream.
type Msg struct {
	Subject string
	ID      string // Nats-Msg-Id: a retried publish is stored once
	Data    []byte
	// When ExpectSubject is set, the append succeeds only if the last message
	// on subjects matching ExpectSubject is at sequence ExpectSeq.
	ExpectSubject string
	ExpectSeq     uint64
	// OrderKey, for AppendAll: messages with the same key are stored in
	// the order given, or AppendAll fails with ErrReordered.
	OrderKey string
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

// Append publishes m and waits for the stream's ack, retrying transient
// failures (see Transient) with the same Nats-Msg-Id until ctx ends: a
// plain core publish would be lost silently when a server fails over. It
// returns the stream sequence (the original one when the message was a
// duplicate: JetStream checks the Nats-Msg-Id before any expected-sequence
// header, so a retry of a stored message whose ack was lost is answered as
// a duplicate even though the expectation no longer holds; after the
// duplicate window the expectation fails instead, ErrConflict, and the
// decider's refresh then finds the events). Other errors are returned at
// once.
func Append(ctx context.Context, p Publisher, m Msg) (uint64, error) {
	var seq uint64
	err := retryQuietly(ctx, "append to "+m.Subject, AckTimeout, func(actx context.Context) error {
		ack, err := p.PublishMsg(actx, m.natsMsg(), m.opts()...)
		if err != nil {
			return mapError(err)
		}
		seq = ack.Sequence
		return nil
	})
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("append %s: %w", m.Subject, err)
	}
	return seq, err
}

// AppendAll appends msgs in order and returns the stream sequence of each.
// They are published asynchronously and their acks awaited together; one
// that fails (or whose ack does not come within AckTimeout) is retried
// synchronously with its Nats-Msg-Id, in order.
//
// Messages with the same OrderKey must be stored in the order given (a
// run's metric batches): once a publish fails or the connection drops,
// nothing after it is published asynchronously, since a later message
// could then be stored before an earlier one that was lost on the way. If
// a failover still reordered them (an earlier message lost on its way to a
// stream leader that died after a later one reached its successor), the
// error is ErrReordered.
func AppendAll(ctx context.Context, p Publisher, msgs []Msg) ([]uint64, error) {
	seqs := make([]uint64, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	conn := publisherConn(p)
	var reconnects uint64
	if conn != nil {
		reconnects = conn.Stats().Reconnects
	}
	for i, m := range msgs {
		if conn != nil && (!conn.IsConnected() || conn.Stats().Reconnects != reconnects) {
			break
		}
		// No retries inside nats.go: it would re-send a message that met
		// no stream leader while the next one is already stored.
		f, err := p.PublishMsgAsync(m.natsMsg(), append(m.opts(), jetstream.WithRetryAttempts(0))...)
		if err != nil {
			break
		}
		futures[i] = f
	}
	timer := time.NewTimer(AckTimeout)
	defer timer.Stop()
	for i, f := range futures {
		if f != nil {
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(AckTimeout)
			select {
			case ack := <-f.Ok():
				seqs[i] = ack.Sequence
				continue
			case err := <-f.Err():
				if err = mapError(err); !retryable(ctx, err) {
					return nil, fmt.Errorf("append %s: %w", msgs[i].Subject, err)
				}
			case <-timer.C:
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
	last := map[string]int{}
	for i, m := range msgs {
		if m.OrderKey == "" {
			continue
		}
		if j, ok := last[m.OrderKey]; ok && seqs[j] >= seqs[i] {
			return seqs, fmt.Errorf("%w: %s (%s) at sequence %d, before it %s at %d", ErrReordered, m.OrderKey, msgs[j].ID, seqs[j], m.ID, seqs[i])
		}
		last[m.OrderKey] = i
	}
	return seqs, nil
}

// publisherConn returns the NATS connection under p, if it tells.
func publisherConn(p Publisher) *nats.Conn {
	if c, ok := p.(interface{ Conn() *nats.Conn }); ok {
		return c.Conn()
	}
	return nil
}

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
	var seqs []uint64
	err := retryQuietly(ctx, "append batch to "+msgs[0].Subject, 0, func(ctx context.Context) (err error) {
		seqs, err = appendBatchOnce(ctx, nc, msgs)
		return err
	})
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrAlreadyAppended) && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("append batch to %s: %w", msgs[0].Subject, err)
	}
	return seqs, err
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
		rctx, cancel := context.WithTimeout(ctx, AckTimeout)
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
