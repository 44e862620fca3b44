package query

import (
	"context"
	"time"

	"github.com/logbook/logbook/events"
)

// QuarantinePoll is how often a read model stopped at an unreadable event
// looks for its quarantine.
var QuarantinePoll = time.Second

// awaitQuarantine holds g's follow at the unreadable event u: the read
// model keeps answering reads as of the event before it, readiness fails
// with u's message (the sequence and the command that skips it), and the
// log repeats it every minute. It returns true once u's sequence is
// quarantined (the follow then resumes, skipping it), false when ctx ends.
// The projector does not exit: in the all-in-one that would take ingest,
// and with it the way to quarantine, down too.
func (p *ReadModel) awaitQuarantine(ctx context.Context, g *generation, u *events.UnreadableError) bool {
	if p.opts.Quarantined == nil {
		return false // no way to learn of a quarantine: fail as before
	}
	p.stalled.Store(u)
	defer p.stalled.Store(nil)
	p.log.Error("read model stopped at an unreadable event", "dir", g.dir, "seq", u.Seq, "err", u.Error())
	tick := time.NewTicker(QuarantinePoll)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case now := <-tick.C:
			set, err := p.opts.Quarantined(ctx)
			if err == nil && set[u.Seq] {
				p.log.Info("unreadable event quarantined; the read model resumes", "dir", g.dir, "seq", u.Seq)
				return true
			}
			if now.Sub(lastLog) >= time.Minute {
				lastLog = now
				p.log.Error("read model still stopped at an unreadable event", "dir", g.dir, "seq", u.Seq, "err", u.Error())
			}
		}
	}
}

// Stalled returns the unreadable event the live read model waits at (its
// message names the sequence and the quarantine command), or nil.
func (p *ReadModel) Stalled() error {
	if u := p.stalled.Load(); u != nil {
		return u
	}
	return nil
}
