package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Backoff is a capped, jittered exponential backoff: each wait is a random
// duration between half and all of the current step, which doubles from
// Min up to Max.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Wait sleeps for the next step, or until ctx ends (then it returns
// ctx.Err()).
func (b *Backoff) Wait(ctx context.Context) error {
	if b.Min <= 0 {
		b.Min = 50 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = 2 * time.Second
	}
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.Max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset starts the next Wait from Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// retrying reports a run of transient failures of one operation: the first
// one and then every 10 s at warn level, the recovery at info level, so a
// failover leaves a few lines rather than one per attempt. A quiet one
// (an append: one per request, many at once) reports at debug level until
// the failures have lasted 10 s.
type retrying struct {
	log      *slog.Logger
	what     string
	quiet    bool
	first    time.Time
	lastLog  time.Time
	warned   bool
	attempts int
	backoff  Backoff
}

func newRetrying(log *slog.Logger, what string) *retrying {
	if log == nil {
		log = slog.Default()
	}
	return &retrying{log: log, what: what, backoff: Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}}
}

// failed records a transient failure and waits before the next attempt.
func (r *retrying) failed(ctx context.Context, err error) error {
	now := time.Now()
	if r.attempts == 0 {
		r.first = now
	}
	r.attempts++
	if r.attempts == 1 || now.Sub(r.lastLog) >= 10*time.Second {
		r.lastLog = now
		level := slog.LevelWarn
		if r.quiet && now.Sub(r.first) < 10*time.Second {
			level = slog.LevelDebug
		}
		r.warned = r.warned || level == slog.LevelWarn
		r.log.Log(ctx, level, r.what+": transient failure, retrying", "err", err, "attempts", r.attempts, "for", now.Sub(r.first).Round(time.Millisecond))
	}
	return r.backoff.Wait(ctx)
}

// ok records a success (after failures, it reports the recovery).
func (r *retrying) ok() {
	if r.attempts > 0 {
		level := slog.LevelInfo
		if !r.warned {
			level = slog.LevelDebug
		}
		r.log.Log(context.Background(), level, r.what+": recovered", "attempts", r.attempts, "after", time.Since(r.first).Round(time.Millisecond))
	}
	r.attempts, r.warned = 0, false
	r.backoff.Reset()
}

// Retry runs op until it succeeds, fails with an error that is not
// Transient (returned as is), or ctx ends. Each attempt gets its own
// context, bounded by attempt if it is positive. Transient failures are
// logged (see retrying) under what.
func Retry(ctx context.Context, log *slog.Logger, what string, attempt time.Duration, op func(context.Context) error) error {
	return retry(ctx, newRetrying(log, what), attempt, op)
}

// retryQuietly is Retry for operations that many callers run at once (see
// retrying).
func retryQuietly(ctx context.Context, what string, attempt time.Duration, op func(context.Context) error) error {
	r := newRetrying(nil, what)
	r.quiet = true
	return retry(ctx, r, attempt, op)
}

func retry(ctx context.Context, r *retrying, attempt time.Duration, op func(context.Context) error) error {
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if attempt > 0 {
			actx, cancel = context.WithTimeout(ctx, attempt)
		}
		err := op(actx)
		cancel()
		if err == nil {
			r.ok()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %v)", r.what, ctx.Err(), err)
		}
		if !retryable(ctx, err) {
			return err
		}
		if werr := r.failed(ctx, err); werr != nil {
			return fmt.Errorf("%s: %w (last error: %v)", r.what, werr, err)
		}
	}
}

// Puller fetches from a durable pull consumer (the decider's), riding over
// transient failures: a leader election of the consumer or its stream, a
// lost server, a timed-out pull. A consumer found missing is recreated with
// Ensure (when set) and fetched from again; its unacknowledged messages are
// delivered again as JetStream does after any consumer failover.
type Puller struct {
	Consumer jetstream.Consumer
	// Ensure, when set, recreates the consumer if it was deleted.
	Ensure func(context.Context) error
	Log    *slog.Logger
	What   string // how failures are reported ("fetch proposals")

	retry *retrying
}

// Fetch returns up to n messages: those ready now, or else the first one to
// arrive within wait (none if none does). It returns an error only for a
// failure that retrying cannot fix, or ctx.Err() once ctx ends.
func (p *Puller) Fetch(ctx context.Context, n int, wait time.Duration) ([]jetstream.Msg, error) {
	if p.retry == nil {
		p.retry = newRetrying(p.Log, p.What)
	}
	for {
		out, err := p.fetch(n, wait)
		if err == nil {
			p.retry.ok()
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !Transient(err) {
			return nil, fmt.Errorf("%s: %w", p.What, err)
		}
		if p.Ensure != nil && (errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted)) {
			if eerr := p.Ensure(ctx); eerr != nil {
				err = fmt.Errorf("%w; recreating it: %v", err, eerr)
			}
		}
		if werr := p.retry.failed(ctx, err); werr != nil {
			return nil, werr
		}
	}
}

func (p *Puller) fetch(n int, wait time.Duration) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	take := func(msgs jetstream.MessageBatch, err error) error {
		if err != nil {
			return err
		}
		for m := range msgs.Messages() {
			out = append(out, m)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			// Messages already received are returned; the failure
			// shows again on the next fetch if it lasts.
			if len(out) > 0 {
				return nil
			}
			return err
		}
		return nil
	}
	if err := take(p.Consumer.FetchNoWait(n)); err != nil || len(out) > 0 {
		return out, err
	}
	return out, take(p.Consumer.Fetch(1, jetstream.FetchMaxWait(wait)))
}
