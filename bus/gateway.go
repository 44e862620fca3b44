package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/events"
)

// The client gateway: the only way a client's message reaches a stream.
//
// A client (in ClientsAccount) publishes its proposal on
// <prefix>.in.<user>.<entity>.<project>.<type>, as if into the inbox. The
// service import of AuthConf maps that subject to
// <prefix>.gw.in.<user>.... in LogbookAccount, a subject no stream
// captures, and replaces the reply subject with a private _R_ mapping.
// The gateway (served by ingest, a queue group) republishes the proposal
// into the inbox stream itself and answers the client with JetStream's
// acknowledgement. It keeps none of the client's headers but Nats-Msg-Id,
// which it scopes to the user:
//
//   - JetStream headers (Nats-Rollup, Nats-TTL, Nats-Batch-*,
//     Nats-Expected-*, Nats-Schedule-*, Nats-Marker-Reason, ...) never act
//     on the inbox, and headers that nats.go's consumers interpret when
//     they are delivered (a Nats-Pin-Id pins the decider's pull consumer,
//     which the server then refuses for good: the decider stalls; a Status
//     header on an empty body makes a proposal look like a heartbeat) never
//     reach the decider.
//   - Nats-Msg-Id keeps its meaning (a retried publish is stored once) but
//     becomes "<user>:<id>": JetStream's duplicate window is one per stream,
//     and a client must not be able to make another user's proposal (the
//     HTTP edge uses bare proposal ids) look like a duplicate.
//
// It also checks the Nats-Request-Info header nats-server sets on a
// message crossing the import (a client cannot forge it: the server
// replaces it): the account must be ClientsAccount and the user's name
// (the callout's JWT names it) the subject's user token. nats-server's
// permissions already bind the subject to the user; this check can only
// refuse more. A reply subject
// that is not a private _R_ mapping (nats-server passes $JS.ACK. replies
// through imports unchanged) is not answered.

// ClientProposals is the subject the gateway serves: the clients'
// proposal subjects as they arrive in LogbookAccount.
func ClientProposals(s events.Subjects) string { return s.Prefix + ".gw.in.>" }

// Gateway republishes clients' proposals into the inbox stream.
type Gateway struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Subjects events.Subjects
	Log      *slog.Logger
	// Timeout bounds one store in the inbox (default 10s); the client is
	// not answered then, and retries.
	Timeout time.Duration
	// Allow, when set, rate-limits each user's proposals (the HTTP edge's
	// per-key limit, for clients that publish over NATS): a refused one is
	// answered with a JetStream API error of code 429 and not stored.
	Allow func(user string) (ok bool, retryAfter time.Duration)

	stored, refused atomic.Int64
}

// Counts returns how many proposals the gateway stored and refused.
func (g *Gateway) Counts() (stored, refused int64) { return g.stored.Load(), g.refused.Load() }

// Serve serves the gateway until ctx ends. Several may run (a queue
// group); each handles its messages one at a time, in order, so one
// client's proposals keep their order.
func (g *Gateway) Serve(ctx context.Context) error {
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	if g.Timeout == 0 {
		g.Timeout = 10 * time.Second
	}
	subject := ClientProposals(g.Subjects)
	sub, err := g.NC.QueueSubscribe(subject, "logbook-gateway", func(m *nats.Msg) { g.handle(ctx, m) })
	if err != nil {
		return errors.Join(errors.New("subscribe "+subject), err)
	}
	defer sub.Unsubscribe()
	if err := g.NC.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// clientInfo is the part of nats-server's Nats-Request-Info header the
// gateway checks.
type clientInfo struct {
	Account string `json:"acc"`
	// User is the name the auth callout gave the connection (its JWT's
	// name replaces whatever user name the client sent).
	User string `json:"user"`
}

func (g *Gateway) handle(ctx context.Context, m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, g.Subjects.Prefix+".gw.")
	if !ok {
		return
	}
	subject := g.Subjects.Prefix + "." + rest // <prefix>.in.<user>....
	user, _, _, _, err := g.Subjects.ParseProposal(subject)
	var ci clientInfo
	if m.Header != nil {
		_ = json.Unmarshal([]byte(m.Header.Get("Nats-Request-Info")), &ci)
	}
	if err != nil {
		// Not a proposal subject: what the decider would refuse as
		// undecidable, refused here (debug: a client controls how often).
		g.refused.Add(1)
		g.Log.Debug("refused a client message on a subject that is no proposal", "subject", m.Subject, "err", err)
		return
	}
	if ci.Account != ClientsAccount || ci.User != user {
		g.refused.Add(1)
		g.Log.Warn("refused a client proposal that did not come from its user's connection",
			"subject", m.Subject, "account", ci.Account, "user", ci.User)
		return
	}
	if g.Allow != nil {
		if ok, wait := g.Allow(user); !ok {
			g.refused.Add(1)
			g.answer(m, rateLimited(user, wait))
			return
		}
	}
	out := &nats.Msg{Subject: subject, Data: m.Data, Header: nats.Header{}}
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
		out.Header.Set(jetstream.MsgIDHeader, user+":"+id)
	}
	pctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	ack, err := g.JS.PublishMsg(pctx, out)
	var answer []byte
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		g.stored.Add(1)
		answer, _ = json.Marshal(ack)
	case errors.As(err, &apiErr):
		answer, _ = json.Marshal(map[string]any{"error": apiErr})
	default:
		g.Log.Warn("store a client proposal", "subject", subject, "err", err)
		return // no answer: the client's publish times out and it retries
	}
	g.answer(m, answer)
}

// answer answers a client's proposal, if its reply subject is a private
// _R_ mapping (see the package comment above).
func (g *Gateway) answer(m *nats.Msg, answer []byte) {
	if strings.HasPrefix(m.Reply, "_R_.") {
		if err := m.Respond(answer); err != nil {
			g.Log.Debug("answer a client proposal", "err", err)
		}
	}
}

// rateLimited is the answer to a proposal over a user's rate limit, in
// the shape of a JetStream publish error (nats.go returns it as an
// *jetstream.APIError with Code 429).
func rateLimited(user string, wait time.Duration) []byte {
	b, _ := json.Marshal(map[string]any{"error": jetstream.APIError{Code: 429,
		Description: fmt.Sprintf("rate limited: user %q sends proposals faster than allowed; retry in %s", user, wait.Round(time.Millisecond))}})
	return b
}
