package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/logbook/logbook/ingest"
)

// procStat is a process's CPU time and memory at a moment.
type procStat struct {
	at       time.Time
	cpuTicks int64 // user + system, in clock ticks (1/100 s)
	rss, hwm int64 // resident set size and its peak, bytes
	// anon is the anonymous part of rss (heaps); the rest is file pages
	// (memory-mapped Badger tables and JetStream blocks), which the
	// kernel reclaims under pressure.
	anon int64
}

// readProc reads /proc/<pid>/stat and status (zero values elsewhere).
func readProc(pid int) procStat {
	p := procStat{at: time.Now()}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				p.cpuTicks = u + s
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				switch f[0] {
				case "VmRSS:":
					p.rss = v << 10
				case "VmHWM:":
					p.hwm = v << 10
				case "RssAnon:":
					p.anon = v << 10
				}
			}
		}
	}
	return p
}

// cpu returns the CPU use between prev and p, in percent of one core.
func (p procStat) cpu(prev procStat) float64 {
	secs := p.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(p.cpuTicks-prev.cpuTicks) / 100 / secs * 100
}

func (p procStat) sub(prev procStat, _ float64) float64 { return p.cpu(prev) }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// report prints the figures, each with its ratio to the baseline of the
// same run.
type report struct {
	out  io.Writer
	cfg  config
	base *baseline
	// stored counts the points of every mode run so far (the data
	// directory holds them all).
	stored int64
}

func (r *report) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }

func (r *report) header() {
	c := r.cfg
	where := "all-in-one Logbook in this process (CPU and RSS include the generator; per-key HTTP rate limit off)"
	if c.s2 {
		where += "; events stream S2-compressed"
	}
	if c.url != "" {
		where = c.url
	}
	rate := "as fast as possible"
	if c.rate > 0 {
		rate = fmt.Sprintf("%g rows/s each", c.rate)
	}
	limit := "no memory limit"
	if n := debug.SetMemoryLimit(-1); n < math.MaxInt64 {
		limit = fmt.Sprintf("memory limit %d MiB (-memory.limit)", n>>20)
	}
	r.printf("loadgen: %d CPUs, %s, %s; %s\n", runtime.NumCPU(), runtime.Version(), limit, where)
	r.printf("  load: %d jobs x rows of %d metrics, %s, batches of %d rows (flush %v), %v per mode\n",
		c.jobs, c.metrics, rate, c.batch, c.flush, c.duration)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(v, base float64) string {
	if base <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", v/base)
}

func (r *report) printBaseline() {
	b := r.base
	r.printf("baseline (raw JetStream, embedded nats-server, file storage, measured now):\n")
	r.printf("  async publish of %d-row events (%d B): %s msgs/s = %.1f MB/s = %s points/s\n",
		r.cfg.batch, b.payloadBytes, si(b.pubMsgs), b.pubBytes/1e6, si(b.pubPoints))
	r.printf("  sync publish of a 150 B event: p50 %s, p99 %s\n", ms(b.syncP50), ms(b.syncP99))
	r.printf("  consume (ordered consumer, no decoding): %s msgs/s = %s points/s\n", si(b.consumeMsgs), si(b.consumePts))
}

func (r *report) baseOr(f func(*baseline) float64) float64 {
	if r.base == nil {
		return 0
	}
	return f(r.base)
}

func (r *report) latencies(what string, d []time.Duration) {
	p50, p99 := percentile(d, 50), percentile(d, 99)
	r.printf("  %s (%d): p50 %s (x%s of a raw sync publish), p99 %s (x%s)\n", what, len(d),
		ms(p50), ratio(float64(p50), r.baseOr(func(b *baseline) float64 { return float64(b.syncP50) })),
		ms(p99), ratio(float64(p99), r.baseOr(func(b *baseline) float64 { return float64(b.syncP99) })))
}

func (r *report) printStarts(d []time.Duration) {
	r.printf("run start, idle server, sequential:\n")
	r.latencies("run start", d)
}

func (r *report) printLoad(res *result, s *server) {
	pub := r.baseOr(func(b *baseline) float64 { return b.pubPoints })
	r.printf("%s mode (%.1f s window):\n", res.mode, res.seconds)
	logged := float64(res.sentPoints) / res.seconds
	visible := float64(res.visibleAtEnd) / res.seconds
	r.printf("  points/s logged:                  %s (ratio to raw publish %s)\n", si(logged), ratio(logged, pub))
	r.printf("  points/s visible by window end:   %s (ratio to raw publish %s)\n", si(visible), ratio(visible, pub))
	r.printf("  points/s end to end incl. drain:  %s (drain after the window: %v)\n",
		si(float64(res.readBack)/(res.seconds+res.drain.Seconds())), res.drain.Round(time.Millisecond))
	ev := float64(res.sentEvents) / res.seconds
	r.printf("  events/s appended:                %s (ratio to raw publish %s)\n", si(ev), ratio(ev, r.baseOr(func(b *baseline) float64 { return b.pubMsgs })))
	if res.sentBytes > 0 {
		mbs := float64(res.sentBytes) / 1e6 / res.seconds
		r.printf("  history lines MB/s:               %.1f (ratio to raw publish MB/s %s)\n", mbs, ratio(mbs*1e6, r.baseOr(func(b *baseline) float64 { return b.pubBytes })))
	}
	p50, p99 := percentile(res.fresh, 50), percentile(res.fresh, 99)
	r.printf("  freshness, log -> visible (%d probes): p50 %s, p99 %s (x%s of a raw sync publish p99)\n", len(res.fresh),
		ms(p50), ms(p99), ratio(float64(p99), r.baseOr(func(b *baseline) float64 { return float64(b.syncP99) })))
	if len(res.behind) > 0 {
		r.printf("  read models behind the edge (its /metrics, %d samples): p50 %s, p99 %s, max %s\n", len(res.behind),
			ms(percentile(res.behind, 50)), ms(percentile(res.behind, 99)), ms(percentile(res.behind, 100)))
	}
	r.latencies("run start under load", res.startsLoaded)
	cpuSecs := float64(res.cpu1.cpuTicks-res.cpu0.cpuTicks) / 100
	perCPU := 0.0
	if cpuSecs > 0 {
		perCPU = float64(res.readBack) / cpuSecs
	}
	r.printf("  server CPU %.0f%% of one core (window + drain): %s points per CPU-second; RSS %d MiB, peak %d MiB\n",
		res.cpu1.cpu(res.cpu0), si(perCPU), res.cpu1.rss>>20, res.cpu1.hwm>>20)
	r.printf("  RSS over time (s/points logged: RSS): %s\n", rssLine(res.rss))
	if res.hasDisk && res.readBack > 0 {
		// The whole data directory holds every mode run so far: divide by
		// every point stored, not only this mode's.
		r.stored += res.readBack
		pts := float64(r.stored)
		r.printf("  disk per point (%d points stored so far): %.1f B = log %.1f B (JetStream store %s) + read model %.1f B (Badger %s)\n",
			r.stored, float64(res.disk.log+res.disk.readModel)/pts, float64(res.disk.log)/pts, mib(res.disk.log),
			float64(res.disk.readModel)/pts, mib(res.disk.readModel))
	}
	p := res.press
	held := "n/a (server in another process)"
	if s.inProcess {
		held = fmt.Sprintf("%d held then accepted, %d held %v then refused (429), %d of them held while the read model was behind; %.1f s held in all",
			p.server.Held, p.server.Refused, ingest.MaxHold, p.server.Behind, p.server.HeldFor.Seconds())
	}
	r.printf("  back-pressure: client saw %d x 429, %d x 503; server: %s\n", p.tooMany, p.unavailable, held)
	r.printf("  sent %d points in %d rows; read back %d points; missing %d\n", res.sentPoints, res.sentRows, res.readBack, res.missing)
	for _, p := range res.problems {
		r.printf("  PROBLEM: %s\n", p)
	}
}

func (r *report) printRebuild(msgs int, points int64, secs, rawSecs, cpu float64) {
	rate := float64(points) / secs
	raw := float64(points) / rawSecs
	r.printf("rebuild (replay %d events into an empty read model):\n", msgs)
	r.printf("  %s points/s, %s events/s in %.2f s, CPU %.0f%% (ratio to a raw read of the same stream, %s points/s: %s)\n",
		si(rate), si(float64(msgs)/secs), secs, cpu, si(raw), ratio(rate, raw))
}

func (r *report) footer() {
	p := readProc(os.Getpid())
	r.printf("loadgen process at exit: RSS %d MiB, peak %d MiB\n", p.rss>>20, p.hwm>>20)
}
