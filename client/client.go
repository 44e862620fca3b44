// Package client is Logbook's Go SDK for training code.
//
//	run, err := client.Init(ctx, client.Options{
//		Entity: "your-team-name", Project: "awesome-segmentation",
//		JobType: "training", Config: map[string]any{"learning_rate": 0.001},
//	})
//	if err != nil { ... }
//	for step := 0; step < 1000; step++ {
//		run.Log(map[string]any{"loss": loss, "accuracy": acc})
//	}
//	if err := run.Finish(); err != nil { ... }
//
// Init is synchronous: it returns the run's final id and name, or the
// rejection. Log never waits on the network: rows are buffered and sent in
// batches (by count and by time) by a background goroutine. Finish flushes
// and reports any rejection.
//
// # Retries
//
// Every request carries an Idempotency-Key, chosen once per call (per Init,
// per batch, per Finish) and sent again on each retry of that call, so
// Logbook applies it at most once. One loop retries network errors and the
// answers a retry may fix (408, 429, and 5xx but 501 and 505),
// waiting the server's Retry-After on 429 and 503, otherwise an exponential
// backoff from 100 ms to 5 s with jitter. Batches are retried until they are
// accepted or refused; Init and Finish retry for Options.RetryFor (default
// 5 minutes), and Init no longer than its context allows.
//
// A retried Init therefore makes one run. An Init that returned an error
// may still have created the run (its answer was lost and retrying did not
// get through in time); calling Init again would start a second run. To
// retry Init yourself safely, choose the run id (Options.ID, for instance
// from your scheduler's job id) and pass Resume: "allow": a second Init
// then continues the run the first one created, and starts it otherwise.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/logbook/logbook/events"
)

// Options configure a run.
type Options struct {
	// BaseURL of Logbook; default $LOGBOOK_URL, else http://127.0.0.1:8080.
	BaseURL string
	// APIKey; default $LOGBOOK_API_KEY.
	APIKey string

	Entity, Project string
	ID              string // optional client-chosen run id
	Name            string // display name; made unique in the project
	JobType         string
	Group           string
	Notes           string
	Tags            []string
	Config          map[string]any
	Resume          string // "", "allow", "must" or "never"

	// BatchRows sends a batch once this many rows are buffered (default 1000).
	BatchRows int
	// FlushInterval sends buffered rows at least this often (default 500ms).
	FlushInterval time.Duration
	// MaxBufferedRows bounds memory while the server is unreachable
	// (default 1,000,000); Log returns ErrBufferFull beyond it.
	MaxBufferedRows int
	// HeartbeatInterval is how often the run tells Logbook it is alive
	// while it logs nothing (default 30s; Logbook marks a run crashed
	// after 5 minutes of silence).
	HeartbeatInterval time.Duration
	// RetryFor is how long Init and Finish keep retrying a request that
	// failed in a way a retry may fix (default 5 minutes; a deadline on
	// Init's context also bounds it). Batches are retried until Finish.
	RetryFor   time.Duration
	HTTPClient *http.Client
}

// ErrBufferFull is returned by Log when the server has been unreachable for
// so long that MaxBufferedRows rows are waiting.
var ErrBufferFull = errors.New("logbook: too many rows buffered while the server is unreachable; this row was dropped")

// APIError is an error answered by Logbook: a stable code and a message.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`

	retryAfter time.Duration // the answer's Retry-After, on 429 and 503
}

func (e *APIError) Error() string { return fmt.Sprintf("logbook: %s (%s)", e.Message, e.Code) }

// Run is a started run.
type Run struct {
	ID, Name        string
	Entity, Project string
	// LastStep is the last step the run had logged when Init returned (-1
	// for none): after a resume, Log continues at LastStep+1.
	LastStep int64

	c    *conn
	opts Options

	mu      sync.Mutex
	step    int64
	buf     []events.Row
	err     error // first rejection of a batch
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	lastSeq uint64
}

type conn struct {
	base, key string
	http      *http.Client
}

// withDefaults fills in every option left zero.
func (o Options) withDefaults() (Options, error) {
	if o.BaseURL == "" {
		o.BaseURL = os.Getenv("LOGBOOK_URL")
	}
	if o.BaseURL == "" {
		o.BaseURL = "http://127.0.0.1:8080"
	}
	if o.APIKey == "" {
		o.APIKey = os.Getenv("LOGBOOK_API_KEY")
	}
	if o.APIKey == "" {
		return o, errors.New("logbook: no API key: set Options.APIKey or LOGBOOK_API_KEY")
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 1000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 500 * time.Millisecond
	}
	if o.MaxBufferedRows <= 0 {
		o.MaxBufferedRows = 1_000_000
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 5 * time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	return o, nil
}

// Init starts a run and returns once Logbook has accepted it. It retries
// (see the package comment) with one idempotency key, so it starts at most
// one run.
func Init(ctx context.Context, o Options) (*Run, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &conn{base: strings.TrimRight(o.BaseURL, "/"), key: o.APIKey, http: o.HTTPClient}
	var cfg json.RawMessage
	if o.Config != nil {
		b, err := json.Marshal(o.Config)
		if err != nil {
			return nil, fmt.Errorf("logbook: config is not JSON-encodable: %w", err)
		}
		cfg = b
	}
	body := map[string]any{"id": o.ID, "name": o.Name, "job_type": o.JobType, "group": o.Group, "notes": o.Notes,
		"tags": o.Tags, "config": cfg, "resume": o.Resume}
	var out struct {
		Run      string `json:"run_id"`
		RunName  string `json:"run_name"`
		RunState string `json:"run_state"`
		Seq      uint64 `json:"seq"`
		LastStep *int64 `json:"last_step"`
	}
	path := "/api/v1/projects/" + o.Entity + "/" + o.Project + "/runs"
	ctx, cancel := context.WithTimeout(ctx, o.RetryFor)
	defer cancel()
	// One key for this Init, sent on every retry: Logbook decides a
	// proposal once per key (and the run id defaults to it), so a start
	// whose answer was lost is not started twice.
	if err := c.do(ctx, "POST", path, events.NewID(time.Now()), body, &out); err != nil {
		return nil, err
	}
	r := &Run{ID: out.Run, Name: out.RunName, Entity: o.Entity, Project: o.Project, c: c, opts: o,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}), lastSeq: out.Seq}
	if out.LastStep != nil {
		// A resumed run continues after its last logged step, as in W&B.
		r.step = *out.LastStep + 1
		r.LastStep = *out.LastStep
	} else {
		r.LastStep = -1
	}
	go r.sender()
	return r, nil
}

// Log records one row of metrics at the next step. Values may be any Go
// number or bool; nested maps are flattened with "/" ("train/loss").
// Non-finite floats are kept. It never waits on the network.
func (r *Run) Log(values map[string]any) error {
	r.mu.Lock()
	step := r.step
	r.mu.Unlock()
	return r.LogStep(step, values)
}

// LogStep records a row at an explicit step; later Log calls continue after
// it. Steps must increase; a row at or below the last step is dropped by
// the server.
func (r *Run) LogStep(step int64, values map[string]any) error {
	row := events.Row{Step: step, Time: float64(time.Now().UnixNano()) / 1e9, Values: map[string]events.Value{}}
	var bad []string
	flatten("", values, row.Values, &bad)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if len(r.buf) >= r.opts.MaxBufferedRows {
		return ErrBufferFull
	}
	if step >= r.step {
		r.step = step + 1
	}
	if len(row.Values) > 0 {
		r.buf = append(r.buf, row)
		if len(r.buf) >= r.opts.BatchRows {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("logbook: not logged (values must be numbers or bools): %s", strings.Join(bad, ", "))
	}
	return nil
}

func flatten(prefix string, in map[string]any, out map[string]events.Value, bad *[]string) {
	for k, v := range in {
		key := k
		if prefix != "" {
			key = prefix + "/" + k
		}
		switch x := v.(type) {
		case map[string]any:
			flatten(key, x, out, bad)
		case float64:
			out[key] = events.Value(x)
		case float32:
			out[key] = events.Value(x)
		case int:
			out[key] = events.Value(x)
		case int64:
			out[key] = events.Value(x)
		case int32:
			out[key] = events.Value(x)
		case uint:
			out[key] = events.Value(x)
		case uint64:
			out[key] = events.Value(x)
		case uint32:
			out[key] = events.Value(x)
		case bool:
			out[key] = events.Value(map[bool]float64{true: 1}[x])
		case events.Value:
			out[key] = x
		default:
			*bad = append(*bad, key)
		}
	}
}

// sender sends buffered rows in batches until Finish.
func (r *Run) sender() {
	defer close(r.stopped)
	t := time.NewTicker(r.opts.FlushInterval)
	defer t.Stop()
	lastSent := time.Now()
	for {
		select {
		case <-r.kick:
		case <-t.C:
		case <-r.done:
			r.flush(true)
			return
		}
		if r.flush(false) {
			lastSent = time.Now()
		} else if time.Since(lastSent) >= r.opts.HeartbeatInterval {
			r.heartbeat()
			lastSent = time.Now()
		}
	}
}

// heartbeat tells Logbook the run is alive while it logs nothing. Errors
// are ignored: the next rows or heartbeat will tell again.
func (r *Run) heartbeat() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.c.do(ctx, "POST", "/api/v1/projects/"+r.Entity+"/"+r.Project+"/runs/"+r.ID+"/heartbeat", events.NewID(time.Now()), struct{}{}, nil)
}

// flush sends everything buffered; all forces sending partial batches. It
// reports whether it sent anything.
func (r *Run) flush(all bool) (sent bool) {
	for {
		r.mu.Lock()
		n := min(len(r.buf), r.opts.BatchRows)
		if n == 0 || r.err != nil {
			r.mu.Unlock()
			return sent
		}
		batch := r.buf[:n:n]
		r.mu.Unlock()

		id := events.NewID(time.Now())
		path := "/api/v1/projects/" + r.Entity + "/" + r.Project + "/runs/" + r.ID + "/log"
		// The batch goes in columns (events.ColumnsMediaType), which the
		// server checks and passes on without parsing a value; rows it
		// cannot hold (steps that do not increase) go as JSON, for the
		// server to refuse with its reasons.
		var body any = map[string]any{"rows": batch}
		if cols, err := events.FromRows(batch); err == nil {
			body = columnsBody(cols.AppendBody(nil))
		}
		// Retried until accepted or refused: Log keeps buffering meanwhile.
		err := r.c.do(context.Background(), "POST", path, id, body, nil)
		r.mu.Lock()
		r.buf = r.buf[n:]
		if err != nil && r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
		sent = true
		if !all {
			r.mu.Lock()
			more := len(r.buf) >= r.opts.BatchRows
			r.mu.Unlock()
			if !more {
				return sent
			}
		}
	}
}

// Finish flushes every buffered row, marks the run finished (exit code 0)
// and returns the first rejection any batch got, if any.
func (r *Run) Finish() error { return r.FinishWithCode(0) }

// FinishWithCode finishes the run with a process exit code: 0 leaves it
// finished, anything else failed.
func (r *Run) FinishWithCode(code int) error {
	select {
	case <-r.done:
		return errors.New("logbook: run already finished")
	default:
		close(r.done)
	}
	<-r.stopped
	var out struct {
		Seq uint64 `json:"seq"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.RetryFor)
	defer cancel()
	ferr := r.c.do(ctx, "POST", "/api/v1/projects/"+r.Entity+"/"+r.Project+"/runs/"+r.ID+"/finish",
		events.NewID(time.Now()), map[string]any{"exit_code": code}, &out)
	r.mu.Lock()
	defer r.mu.Unlock()
	if out.Seq > 0 {
		r.lastSeq = out.Seq
	}
	return errors.Join(r.err, ferr)
}

// Buffered returns the number of rows logged but not yet accepted by
// Logbook. Code that would rather slow down than buffer (a benchmark, a
// replay of old logs) can wait while it is large.
func (r *Run) Buffered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

// Seq returns the log sequence of the run's last synchronous write: a read
// with min_seq set to it sees that write.
func (r *Run) Seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeq
}
