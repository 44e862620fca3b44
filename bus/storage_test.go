package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestStorageFullClassification: JetStream's answers to a write it has no
// room for are ErrStorageFull, not transient (a write at the edge fails
// fast), and retried only under WaitForSpace (the decider's appends).
func TestStorageFullClassification(t *testing.T) {
	for _, err := range []error{
		&jetstream.APIError{Code: 400, ErrorCode: errCodeAccountResources, Description: "resource limits exceeded for account"},
		fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: errCodeInsufficientResources, Description: "insufficient resources"}),
		&jetstream.APIError{Code: 500, ErrorCode: errCodeStorageResources, Description: "insufficient storage resources available"},
		&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "write /x/1.blk: no space left on device"},
	} {
		m := mapError(err)
		if !errors.Is(m, ErrStorageFull) {
			t.Errorf("mapError(%v) = %v, want ErrStorageFull", err, m)
		}
		if Transient(m) {
			t.Errorf("Transient(%v) = true", m)
		}
		if retryable(context.Background(), m) {
			t.Errorf("retryable(%v) without WaitForSpace", m)
		}
		if !retryable(WaitForSpace(context.Background()), m) {
			t.Errorf("retryable(%v) under WaitForSpace = false", m)
		}
	}
	if err := mapError(&jetstream.APIError{Code: 503, ErrorCode: 10008}); errors.Is(err, ErrStorageFull) {
		t.Errorf("JetStream temporarily unavailable mapped to %v", err)
	}
}
