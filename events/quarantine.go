package events

import (
	"errors"
	"fmt"
)

// UnreadableError is an event of the log that a replayer cannot decode or
// apply: corrupt, written by a newer binary, or injected. Replayers stop
// at it (the projector waits at it) until a site admin quarantines it.
type UnreadableError struct {
	Seq uint64
	Err error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("the event at stream sequence %d of LB_EVENTS cannot be read (%v); "+
		"if it is corrupt or foreign, skip it for good on every replica with: %s", e.Seq, e.Err, QuarantineCommand(e.Seq))
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// QuarantineCommand is the command that quarantines the event at seq.
func QuarantineCommand(seq uint64) string {
	return fmt.Sprintf(`logbook log quarantine -seq %d -reason "..."`, seq)
}

// Unreadable returns the unreadable event in err's chain, if any.
func Unreadable(err error) (*UnreadableError, bool) {
	var u *UnreadableError
	ok := errors.As(err, &u)
	return u, ok
}
