package bus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/logbook/logbook/query"
)

// Admin subjects of the projectors' read models. Every projector answers
// (no queue group): each replica holds its own read model.
//
//	<prefix>.admin.readmodel.status            -> ReadModelStatus with Seq (cheap)
//	<prefix>.admin.readmodel.digest            -> ReadModelStatus with Digest
//	<prefix>.admin.readmodel.verify            -> ReadModelStatus with Verification
//	<prefix>.admin.readmodel.rebuild           -> ReadModelStatus; then progress on
//	<prefix>.admin.readmodel.progress.<id>     <- RebuildProgress messages, the last with Done
//
// A request may name one projector: {"id": "..."}.
func AdminSubject(prefix, op string) string { return prefix + ".admin.readmodel." + op }

// ProgressSubject is where projector id reports rebuild progress.
func ProgressSubject(prefix, id string) string { return AdminSubject(prefix, "progress."+id) }

// ServeAdmin answers status, digest, verify and rebuild requests for rm
// over NATS until stop is called; a rebuild runs with ctx.
func ServeAdmin(ctx context.Context, nc *nats.Conn, prefix string, p *query.ReadModel, log *slog.Logger) (stop func(), err error) {
	var wg sync.WaitGroup
	var subs []*nats.Subscription
	handle := func(op string, fn func(m *nats.Msg) any) error {
		sub, err := nc.Subscribe(AdminSubject(prefix, op), func(m *nats.Msg) {
			var req query.AdminRequest
			_ = json.Unmarshal(m.Data, &req)
			if req.ID != "" && req.ID != p.ID {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, _ := json.Marshal(fn(m))
				_ = m.Respond(b)
			}()
		})
		subs = append(subs, sub)
		return err
	}
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		wg.Wait()
	}
	errs := []error{
		handle("status", func(*nats.Msg) any { return p.Status() }),
		handle("digest", func(*nats.Msg) any {
			st := p.Status()
			d, err := p.Digest()
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Digest = &d
			}
			return st
		}),
		handle("verify", func(*nats.Msg) any {
			st := p.Status()
			v, err := p.Verify(ctx)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Verify = &v
			}
			return st
		}),
		handle("rebuild", func(*nats.Msg) any {
			st := p.Status()
			subj := ProgressSubject(prefix, p.ID)
			wg.Add(1)
			go func() {
				defer wg.Done()
				pub := func(pr query.RebuildProgress) {
					b, _ := json.Marshal(pr)
					_ = nc.Publish(subj, b)
				}
				if _, err := p.Rebuild(ctx, pub); err != nil {
					log.Error("rebuild", "err", err)
					pub(query.RebuildProgress{ID: p.ID, Done: true, Error: err.Error()})
				}
			}()
			return st
		}),
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}
