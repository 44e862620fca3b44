package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/query"
)

// ReadSubject is the request/reply subject of the read service under a prefix.
func ReadSubject(prefix string) string { return prefix + ".read" }

type reply struct {
	Data  json.RawMessage `json:"data,omitempty"`
	Error *errs.Error     `json:"error,omitempty"`
}

// ServeReads registers the read service on NATS as a micro service in a queue
// group, so several projector replicas share the reads.
func ServeReads(nc *nats.Conn, prefix string, r query.Reader, log *slog.Logger) (micro.Service, error) {
	handler := micro.HandlerFunc(func(req micro.Request) { go answer(nc, r, req, log) })
	return micro.AddService(nc, micro.Config{
		Name:        "logbook-read",
		Version:     "1.0.0",
		Description: "Logbook read model",
		QueueGroup:  "logbook-projectors",
		Endpoint:    &micro.EndpointConfig{Subject: ReadSubject(prefix), Handler: handler},
	})
}

// answer serves one read request (in its own goroutine: a read may wait for
// the read model to catch up).
func answer(nc *nats.Conn, r query.Reader, req micro.Request, log *slog.Logger) {
	var rq query.Request
	var out reply
	if err := json.Unmarshal(req.Data(), &rq); err != nil {
		out.Error = errs.E(errs.Invalid, "malformed read request: %v", err)
	} else if data, err := r.Read(context.Background(), rq); err != nil {
		qe, ok := errs.As(err)
		if !ok {
			log.Error("read", "op", rq.Op, "err", err)
			qe = errs.E(errs.Internal, "internal error; see the projector log")
		}
		out.Error = qe
	} else {
		out.Data = data
	}
	b, _ := json.Marshal(out)
	if len(b) > int(nc.MaxPayload()) {
		b, _ = json.Marshal(reply{Error: errs.E(errs.TooLarge, "the answer is larger than %d bytes; ask for fewer points (limit, min_step, max_step)", nc.MaxPayload())})
	}
	_ = req.Respond(b)
}

// NATSReader reads through the NATS read service.
type NATSReader struct {
	NC      *nats.Conn
	Subject string
}

// Read implements Reader.
func (n NATSReader) Read(ctx context.Context, r query.Request) (json.RawMessage, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	// A read is idempotent: while no projector answers (their servers
	// just went away and they are reconnecting) or this connection is
	// reconnecting, ask again for a few seconds before answering 503.
	var msg *nats.Msg
	rctx, cancel := context.WithTimeout(ctx, readRetryFor)
	defer cancel()
	backoff := Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for {
		msg, err = n.ask(ctx, b)
		if err == nil || !Transient(err) || errors.Is(err, context.DeadlineExceeded) || backoff.Wait(rctx) != nil {
			break
		}
	}
	if err != nil {
		if ctx.Err() == nil && Transient(err) {
			return nil, errs.E(errs.Unavailable, "no projector is answering reads (%v)", err)
		}
		return nil, fmt.Errorf("read request: %w", err)
	}
	var out reply
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		return nil, fmt.Errorf("decode read reply: %w", err)
	}
	if out.Error != nil {
		return nil, out.Error
	}
	return out.Data, nil
}

// ask sends one read request. If this connection drops meanwhile, the
// request or its answer may have been lost with the server: it gives up at
// once (nats.ErrDisconnected, transient) instead of waiting for an answer
// that will not come.
func (n NATSReader) ask(ctx context.Context, b []byte) (*nats.Msg, error) {
	status := n.NC.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
	defer n.NC.RemoveStatusListener(status)
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if _, ok := <-status; ok {
			cancel(nats.ErrDisconnected)
		}
	}()
	msg, err := n.NC.RequestWithContext(actx, n.Subject, b)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), nats.ErrDisconnected) {
		err = nats.ErrDisconnected
	}
	return msg, err
}

// readRetryFor bounds how long a read is asked again while no projector
// answers.
const readRetryFor = 5 * time.Second

// Reader reads through the projectors' NATS read service.
func (c *Client) Reader() NATSReader {
	return NATSReader{NC: c.NC, Subject: ReadSubject(c.Subject.Prefix)}
}
