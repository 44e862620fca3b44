package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/logbook/logbook/events"
)

// Backoff between attempts that got no Retry-After: exponential from
// firstBackoff, capped at maxBackoff, each wait drawn from [d/2, d].
// A Retry-After is honoured up to maxRetryAfter.
const (
	firstBackoff  = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	maxRetryAfter = 5 * time.Minute
)

// columnsBody is a request body of binary metric columns
// (events.ColumnsMediaType).
type columnsBody []byte

// do sends a JSON request (or a columnsBody) until it succeeds, fails in a way no retry can
// fix, or ctx ends. Every attempt carries the same Idempotency-Key key, so
// Logbook applies the request at most once. It is the client's only retry
// loop.
func (c *conn) do(ctx context.Context, method, path, key string, body, out any) error {
	contentType := "application/json"
	var b []byte
	switch x := body.(type) {
	case json.RawMessage:
		b = x
	case columnsBody:
		b, contentType = x, events.ColumnsMediaType
	default:
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("logbook: encode request: %w", err)
		}
	}
	var last error // the last failure that was not cut short by ctx
	for attempt := 1; ; attempt++ {
		err := c.send(ctx, method, path, key, contentType, b, out)
		if err == nil || !retryable(err) {
			return err
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		if ctx.Err() == nil {
			t := time.NewTimer(wait(attempt, err))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
				continue
			}
		}
		return fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempt, ctx.Err())
	}
}

// send makes one attempt. A network failure is a *netError; an answer of
// 300 or more an *APIError.
func (c *conn) send(ctx context.Context, method, path, key, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("logbook: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		return &netError{fmt.Errorf("logbook: %s %s: %w", method, path, err)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	resp.Body.Close()
	if err != nil {
		return &netError{fmt.Errorf("logbook: %s %s: read answer: %w", method, path, err)}
	}
	if resp.StatusCode >= 300 {
		return apiError(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("logbook: decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// apiError reads an error answer: Logbook's {"error": {code, message}}, or
// any other body as the message.
func apiError(resp *http.Response, data []byte) *APIError {
	var e struct {
		Error *APIError `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error == nil {
		e.Error = &APIError{Code: "http", Message: strings.TrimSpace(string(data))}
	}
	e.Error.Status = resp.StatusCode
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.Error.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e.Error
}

// netError is a request that got no answer: it may or may not have
// reached Logbook.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// retryable is the one rule of what is sent again (with the same key):
// requests that got no answer, and answers that a later attempt may
// change: 408, 429 (rate limited), and 5xx (unavailable, undecided,
// storage full...) except 501 and 505, which never change.
func retryable(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return ae.Status >= 500
}

// wait returns how long to wait after the attempt-th attempt failed with
// err: the server's Retry-After if it sent one, else the jittered backoff.
func wait(attempt int, err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.retryAfter > 0 {
		return ae.retryAfter
	}
	d := min(firstBackoff<<min(attempt-1, 16), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses a Retry-After header, in seconds or as an HTTP date,
// capped at maxRetryAfter; 0 if absent or unreadable.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
