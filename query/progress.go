package query

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// rateWindow measures a rate over the last few seconds (not since the
// start: a replay's first batch arrives at once from the server's cache,
// and a mean since the start would promise millions of events a second).
type rateWindow struct {
	span    time.Duration
	samples []sample
}

type sample struct {
	at time.Time
	n  uint64
}

// add records that the count was n at time at, and returns the rate per
// second over the window (0 until the window spans a second).
func (w *rateWindow) add(at time.Time, n uint64) float64 {
	w.samples = append(w.samples, sample{at, n})
	for len(w.samples) > 2 && at.Sub(w.samples[1].at) >= w.span {
		w.samples = w.samples[1:]
	}
	first := w.samples[0]
	d := at.Sub(first.at)
	if d < time.Second || n < first.n {
		return 0
	}
	return float64(n-first.n) / d.Seconds()
}

// eta is the time left to cover left at rate per second (0 if unknown).
func eta(left uint64, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
}

// String renders progress for a log line or a terminal.
func (pr RebuildProgress) String() string {
	pct := 100.0
	if pr.Total > 0 {
		pct = 100 * float64(min(pr.Seq, pr.Total)) / float64(pr.Total)
	}
	s := fmt.Sprintf("%s: %d/%d events (%.1f%%)", pr.Dir, pr.Seq, pr.Total, pct)
	if pr.Done {
		if pr.Error != "" {
			return s + ": failed: " + pr.Error
		}
		return s + ": done"
	}
	if pr.Rate > 0 {
		s += fmt.Sprintf(", %.0f events/s", pr.Rate)
		if pr.ETA > 0 {
			s += fmt.Sprintf(", %s left", time.Duration(pr.ETA*float64(time.Second)).Round(time.Second))
		}
	} else {
		s += ", measuring speed"
	}
	return s
}

// progressTracker keeps the rebuild in flight (or the catch-up at start)
// for metrics and admin answers.
type progressTracker struct {
	mu  sync.Mutex
	cur *RebuildProgress
}

func (t *progressTracker) set(pr *RebuildProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pr == nil {
		t.cur = nil
		return
	}
	c := *pr
	t.cur = &c
}

// Progress is the rebuild (or catch-up at start) in flight, if any.
func (p *ReadModel) Progress() (RebuildProgress, bool) {
	p.progress.mu.Lock()
	defer p.progress.mu.Unlock()
	if p.progress.cur == nil {
		return RebuildProgress{}, false
	}
	return *p.progress.cur, true
}

// CaughtUp is closed once the live read model has reached the log's last
// sequence as it was when Run started (readiness).
func (p *ReadModel) CaughtUp() <-chan struct{} { return p.caughtUp }

// watchCatchUp reports the live read model's progress towards the log's
// end as it was at start: a log line every interval with events/s over the
// last seconds and the time left (a read model rebuilt at start, its
// directory deleted or its version changed, replays the whole log), and
// closes CaughtUp when there.
func (p *ReadModel) watchCatchUp(ctx context.Context, interval time.Duration) {
	defer p.caughtUpOnce.Do(func() { close(p.caughtUp) })
	total, err := p.events.LastSeq(ctx)
	if err != nil {
		p.log.Warn("read model: cannot read the log's last sequence; readiness will not wait for the catch-up", "err", err)
		return
	}
	g := p.cur.Load()
	start := g.store.Seq()
	if start >= total {
		return
	}
	p.log.Info("read model catching up with the log", "dir", g.dir, "from", start, "to", total, "events", total-start)
	w := rateWindow{span: 10 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	began, lastLog := time.Now(), time.Now()
	w.add(began, start)
	defer p.progress.set(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			g := p.cur.Load()
			seq := g.store.Seq()
			rate := w.add(now, seq)
			pr := RebuildProgress{ID: p.ID, Dir: g.dir, Seq: seq, Total: total, Applied: int64(seq - start), Rate: rate,
				ETA: eta(total-min(seq, total), rate).Seconds(), CatchUp: true}
			if seq >= total {
				p.log.Info("read model caught up", "dir", g.dir, "seq", seq, "events", seq-start, "took", time.Since(began).Round(time.Millisecond))
				return
			}
			p.progress.set(&pr)
			if now.Sub(lastLog) >= interval {
				lastLog = now
				p.log.Info("read model catching up: "+pr.String(), "seq", seq, "total", total, "events_per_s", int64(rate), "eta", time.Duration(pr.ETA*float64(time.Second)))
			}
		}
	}
}
