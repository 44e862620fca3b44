package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/metrics"
	"github.com/logbook/logbook/query"
)

// Instrument connects the write side to m: decided proposals, points and
// rate-limit hits.
func (in *Ingest) Instrument(m *metrics.Metrics) {
	in.Service.Decider.Observe = m.ObserveProposal
	in.Writes.Limits.OnLimit = m.RateLimited.Inc
	m.WatchFreshness(in.freshness)
}

// freshness samples the read models' lag as the edge sees it, and the
// back-pressure counts.
func (in *Ingest) freshness() metrics.Freshness {
	st := in.Service.Decider.Freshness.Status()
	bp := ingest.BackPressure()
	return metrics.Freshness{BehindSeconds: st.Behind.Seconds(), BehindEvents: st.Events, Projectors: st.Projectors, Ignored: st.Ignored,
		Held: bp.Held, Refused: bp.Refused, HeldBehind: bp.Behind}
}

// Lagging is the write side's note for /readyz: how far the read models
// are behind. It never fails readiness: run starts and every other control
// proposal are taken whatever the lag; only metric batches are held.
func (in *Ingest) Lagging(context.Context) string {
	st := in.Service.Decider.Freshness.Status()
	f := in.Service.Decider.Freshness
	state := "taking metric batches"
	if st.Behind > f.MaxLag {
		state = "holding metric batches"
	}
	return fmt.Sprintf("read models %s behind (%d events; projectors waited for %d, ignored %d): %s",
		st.Behind.Round(time.Millisecond), st.Events, st.Projectors, st.Ignored, state)
}

// Ready is the write side's readiness: the decider has rebuilt its state.
func (in *Ingest) Ready(context.Context) error {
	select {
	case <-in.Service.Ready():
		return nil
	default:
		return errors.New("ingest: rebuilding the policy state from the log")
	}
}

// Ready is the read side's readiness: the read model has caught up with
// the log as it was when the projector started.
func (p *Projector) Ready(context.Context) error {
	if err := p.ReadModel.Stalled(); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	select {
	case <-p.ReadModel.CaughtUp():
		return nil
	default:
		return errors.New("projector: the read model is catching up with the log")
	}
}

// NATSReady is readiness of a NATS connection.
func NATSReady(b *bus.Client) func(context.Context) error {
	return func(context.Context) error {
		if !b.NC.IsConnected() {
			return errors.New("nats: not connected")
		}
		return nil
	}
}

// StreamsProbe samples the sizes of Logbook's JetStream streams.
func StreamsProbe(js jetstream.JetStream) func(ctx context.Context) ([]metrics.Stream, error) {
	return func(ctx context.Context) ([]metrics.Stream, error) {
		var out []metrics.Stream
		for _, name := range []string{bus.EventsStream, bus.InboxStream, bus.RejectionsStream} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, metrics.Stream{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes})
		}
		return out, nil
	}
}

// DeciderProbe samples the inbox: its depth, what no decider has taken
// yet, and the age of its oldest proposal (a work queue: acknowledged
// proposals leave it, so the first message is the oldest undecided one).
func DeciderProbe(js jetstream.JetStream) func(ctx context.Context) (metrics.Decider, error) {
	return func(ctx context.Context) (metrics.Decider, error) {
		var d metrics.Decider
		s, err := js.Stream(ctx, bus.InboxStream)
		if err != nil {
			return d, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return d, err
		}
		d.InboxDepth = info.State.Msgs
		if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
			d.LagSeconds = time.Since(info.State.FirstTime).Seconds()
		}
		if c, err := s.Consumer(ctx, bus.DeciderConsumer); err == nil {
			if ci, err := c.Info(ctx); err == nil {
				d.Pending = ci.NumPending
			}
		}
		return d, nil
	}
}

// ProjectorProbe samples the read model: its lag behind the events stream
// (events, and the age of the oldest event not applied), Badger's sizes,
// and the rebuild or catch-up in flight.
func ProjectorProbe(js jetstream.JetStream, rm *query.ReadModel) func(ctx context.Context) (metrics.Projector, error) {
	return func(ctx context.Context) (metrics.Projector, error) {
		var p metrics.Projector
		s, err := js.Stream(ctx, bus.EventsStream)
		if err != nil {
			return p, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return p, err
		}
		st := rm.Store()
		p.Seq = st.Seq()
		if last := info.State.LastSeq; last > p.Seq {
			p.LagEvents = last - p.Seq
			if m, err := s.GetMsg(ctx, p.Seq+1); err == nil {
				p.LagSeconds = time.Since(m.Time).Seconds()
			}
		}
		p.LSMBytes, p.VlogBytes = st.DB().Size()
		if pr, ok := rm.Progress(); ok {
			p.Rebuilding, p.RebuildApplied, p.RebuildTotal, p.RebuildRate = true, pr.Seq, pr.Total, pr.Rate
		}
		return p, nil
	}
}

// OpsRoutes are /metrics and /readyz of a process with metrics m.
func OpsRoutes(m *metrics.Metrics, ready ...func(context.Context) error) *lbhttp.Ops {
	return &lbhttp.Ops{Metrics: m, Ready: ready}
}
