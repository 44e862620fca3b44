package http

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/logbook/logbook/errs"
)

// Default per-key limits: a client batches its metrics, so even a busy
// training job makes a few requests a second.
const (
	DefaultKeyRate  = 100 // requests per second, on average
	DefaultKeyBurst = 200
)

// KeyLimiter is a per-API-key rate limit (a token bucket per key hash).
type KeyLimiter struct {
	Rate  rate.Limit
	Burst int
	// OnLimit, when set, is called for every refused request (metrics).
	OnLimit func()

	mu   sync.Mutex
	keys map[string]*limiterEntry
	ops  int
}

type limiterEntry struct {
	l    *rate.Limiter
	used time.Time
}

// NewKeyLimiter allows each key perSecond requests per second on average,
// and bursts of burst.
func NewKeyLimiter(perSecond float64, burst int) *KeyLimiter {
	return &KeyLimiter{Rate: rate.Limit(perSecond), Burst: burst, keys: map[string]*limiterEntry{}}
}

// Allow reports whether the key (identified by its hash) may make a request
// now; if not, it says how long to wait.
func (k *KeyLimiter) Allow(keyHash string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.keys[keyHash]
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(k.Rate, k.Burst)}
		k.keys[keyHash] = e
	}
	e.used = now
	if k.ops++; k.ops%10000 == 0 {
		for h, v := range k.keys { // forget keys idle for long enough to have a full bucket
			if now.Sub(v.used) > 10*time.Minute {
				delete(k.keys, h)
			}
		}
	}
	r := e.l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// RateLimitError is the 429 answer of a refused request.
func RateLimitError(wait time.Duration) *errs.Error {
	e := errs.E(errs.RateLimited, "too many requests with this API key; retry in %s", wait.Round(time.Millisecond))
	e.RetryAfter = wait
	return e
}

// Check is Allow for now, as an error: nil, or RateLimitError.
func (k *KeyLimiter) Check(keyHash string) error {
	if ok, wait := k.Allow(keyHash, time.Now()); !ok {
		if k.OnLimit != nil {
			k.OnLimit()
		}
		return RateLimitError(wait)
	}
	return nil
}
