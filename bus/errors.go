package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The errors of this package, and the one classification of NATS and
// JetStream errors: what maps to a sentinel (mapError) and what a retry
// can fix (Transient).

// ErrConflict means an optimistic-concurrency check failed: the aggregate got
// a new event since the sequence the writer expected.
var ErrConflict = errors.New("append conflict: the project changed concurrently")

// mapError maps JetStream errors to this package's sentinels.
func mapError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("%w (%s)", ErrConflict, apiErr.Description)
		case errCodeBatchDuplicate:
			return fmt.Errorf("%w (%s)", ErrAlreadyAppended, apiErr.Description)
		case errCodeAccountResources, errCodeInsufficientResources, errCodeStorageResources:
			return fmt.Errorf("%w (%s)", ErrStorageFull, apiErr.Description)
		case errCodeStoreFailed:
			if strings.Contains(apiErr.Description, "maximum bytes exceeded") || strings.Contains(apiErr.Description, "maximum messages exceeded") {
				return fmt.Errorf("%w (%s)", ErrFull, apiErr.Description)
			}
		}
	}
	if err != nil && !errors.Is(err, ErrStorageFull) && strings.Contains(err.Error(), "no space left") {
		return fmt.Errorf("%w (%v)", ErrStorageFull, err)
	}
	return err
}

// JetStream's answers to a write it has no room for (nats-server
// errors.json): the account's storage limit (GuardStorage keeps the
// embedded server's at the data directory's free space minus a reserve),
// the server's, or a store that failed with "no space left on device".
const (
	errCodeAccountResources      = 10002 // JSAccountResourcesExceededErr
	errCodeInsufficientResources = 10023 // JSInsufficientResourcesErr (503)
	errCodeStorageResources      = 10047 // JSStorageResourcesExceededErr (500)
)

// ErrStorageFull means the event log could not store a write: its storage
// limit is reached or its disk is full. Retrying at once does not help, so
// it is not Transient: a write at the edge fails fast (507 storage_full);
// a component that must not lose what it holds (the decider's appends)
// waits for space with WaitForSpace.
var ErrStorageFull = errors.New("the event log's storage is full")

type waitForSpaceKey struct{}

// WaitForSpace returns a context under which the appends of this package
// (Append, AppendAll, AppendBatch) treat ErrStorageFull as transient: they
// back off (up to 2 s between attempts) and try again until space returns
// or ctx ends, instead of failing.
func WaitForSpace(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitForSpaceKey{}, true)
}

// retryable reports whether a retry loop under ctx tries err again.
func retryable(ctx context.Context, err error) bool {
	if Transient(err) {
		return true
	}
	wait, _ := ctx.Value(waitForSpaceKey{}).(bool)
	return wait && errors.Is(err, ErrStorageFull)
}

// ErrFull means a bounded stream (the inbox's bulk lane) is at its bound
// and refused the message: try again once the decider has caught up. It
// is not transient for bus's own retries: the caller decides (the edge
// holds the request or answers 429).
var ErrFull = errors.New("append: the stream is full")

// errCodeStoreFailed is JetStream's "storing the message failed"
// (JSStreamStoreFailedF), which a DiscardNew stream at its limit answers.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// ErrAlreadyAppended means an atomic batch was refused because its messages
// are already in the stream (their Nats-Msg-Ids are within the duplicate
// window): an earlier attempt committed it.
var ErrAlreadyAppended = errors.New("append: the batch is already in the stream")

// Transient reports whether err is a failure that retrying can fix: the
// cluster is electing a leader, a server went away (no responders, a lost
// consumer, a missed heartbeat), a request timed out, the connection is
// reconnecting. It is the one place where NATS and JetStream errors are
// classified; everything built on bus (Read, Pull, Retry, EnsureTopology,
// the appends) retries what it calls transient and gives up on the rest:
// an optimistic-concurrency conflict, a message too large, a missing
// stream, a refused permission, a closed connection, an invalid
// configuration, or any error it does not know.
//
// context.DeadlineExceeded counts as transient: it is what a per-attempt
// timeout reports; callers stop when their own context ends.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrConflict) || errors.Is(err, ErrAlreadyAppended) || errors.Is(err, ErrReordered) || errors.Is(err, ErrStorageFull) || errors.Is(err, ErrFull) {
		return false
	}
	for _, t := range transientErrors {
		if errors.Is(err, t) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if transientCodes[apiErr.ErrorCode] {
			return true
		}
		if permanentCodes[apiErr.ErrorCode] {
			return false
		}
		return apiErr.Code >= 500 || apiErr.Code == 408 || apiErr.Code == 429
	}
	return false
}

var transientErrors = []error{
	context.DeadlineExceeded,
	nats.ErrTimeout,
	nats.ErrNoResponders,
	nats.ErrDisconnected,
	nats.ErrConnectionReconnecting,
	nats.ErrReconnectBufExceeded,
	nats.ErrStaleConnection,
	nats.ErrSlowConsumer,
	jetstream.ErrNoStreamResponse,
	jetstream.ErrAsyncPublishTimeout,
	jetstream.ErrTooManyStalledMsgs,
	jetstream.ErrNoHeartbeat,
	jetstream.ErrConsumerDeleted,
	jetstream.ErrConsumerLeadershipChanged,
	jetstream.ErrServerShutdown,
	jetstream.ErrConsumerNotFound, // a read recreates its consumer
	errConsumerGap,
}

// JetStream error codes (nats-server errors.json) below 500 that a retry
// can fix, and codes of 500 and above that it cannot.
var (
	transientCodes = map[jetstream.ErrorCode]bool{
		10005: true, // JSClusterNoPeersErrF: no suitable peers while one is down
		10014: true, // JSConsumerNotFoundErr: a lost ephemeral consumer is recreated
		10175: true, // JSAtomicPublishMissingSeqErr: part of a batch was lost in a failover
		10176: true, // JSAtomicPublishIncompleteBatchErr: same
		10202: true, // JSClusterServerMemberChangeInflightErr
		10210: true, // JSAtomicPublishTooManyInflight (429)
	}
	permanentCodes = map[jetstream.ErrorCode]bool{
		10006: true, // JSClusterNotActiveErr
		10010: true, // JSClusterRequiredErr
		10036: true, // JSClusterUnSupportFeatureErr
		10052: true, // JSStreamInvalidConfigF
		10053: true, // JSStreamLimitsErrF
		10074: true, // JSStreamReplicasNotSupportedErr: replicas 3 against a single server
		10096: true, // JSStreamInvalidErr
		10117: true, // JSStreamInfoMaxSubjectsErr
	}
)

// ErrReordered means AppendAll could not keep the order of messages that
// must be stored in order (same OrderKey): an earlier one was lost in a
// failover after a later one had been stored. Retrying cannot undo it.
var ErrReordered = errors.New("append: messages of the same key were stored out of order")

// errConsumerGap: a read's consumer skipped a message (dropped in flight);
// the read recreates its consumer from the last delivered sequence.
var errConsumerGap = errors.New("consumer skipped a message")
