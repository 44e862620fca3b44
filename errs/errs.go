// Package errs is Logbook's one coded error: services (ingest, query, the
// W&B adapter) say what kind of failure happened and give it a stable code
// and a message a person can act on; only the transports (package http,
// and wandb for its own wire shapes) turn a kind into a status.
//
// It imports nothing of Logbook's, so every layer may use it.
package errs

import (
	"errors"
	"fmt"
	"time"
)

// Kind is the class of a failure. Transports map it to a status in one
// place each (http.Status).
type Kind string

// Kinds.
const (
	Invalid         Kind = "invalid"
	Unauthenticated Kind = "unauthenticated"
	Forbidden       Kind = "forbidden"
	NotFound        Kind = "not_found"
	Conflict        Kind = "conflict"
	TooLarge        Kind = "too_large"
	RateLimited     Kind = "rate_limited"
	Unavailable     Kind = "unavailable" // retryable: starting, no projector, leader election
	StorageFull     Kind = "storage_full"
	NotImplemented  Kind = "not_implemented"
	Internal        Kind = "internal"
)

// Error is a failure with a kind, a stable code (what API clients branch on,
// e.g. "run_not_yours") and a message for people.
type Error struct {
	Kind    Kind   `json:"kind"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, when set, is how long the caller should wait before
	// trying again (rate limits, back-pressure).
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error of kind with code.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// E returns an *Error whose code is the kind's name, the common case.
func E(kind Kind, format string, args ...any) *Error {
	return New(kind, string(kind), format, args...)
}

// As returns err's *Error, if it has one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// KindOf is the kind of err: Internal unless err carries an *Error.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return Internal
}
