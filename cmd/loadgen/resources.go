package main

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	_ "net/http/pprof" // -pprof
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/logbook/logbook/ingest"
)

// servePprof serves net/http/pprof on addr (if not empty) for the run.
func servePprof(addr string, stderr io.Writer) {
	if addr != "" {
		go func() { fmt.Fprintln(stderr, "pprof:", http.ListenAndServe(addr, nil)) }()
	}
}

// rssSample is the server's resident set size at a moment of a load mode,
// with the points logged by then.
type rssSample struct {
	secs      float64
	rss, anon int64
	points    int64
}

// sampleRSS reads the process's RSS every interval (and at the first
// second) until the returned function is called, which returns the samples.
func sampleRSS(pid int, start time.Time, every time.Duration, points func() int64) func() []rssSample {
	var mu sync.Mutex
	var out []rssSample
	done := make(chan struct{})
	stopped := make(chan struct{})
	take := func() {
		p := readProc(pid)
		mu.Lock()
		out = append(out, rssSample{secs: time.Since(start).Seconds(), rss: p.rss, anon: p.anon, points: points()})
		mu.Unlock()
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return func() []rssSample {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return out
	}
}

// rssEvery picks a sampling interval: about 60 samples over a window of d,
// at least one every 10 s (d is huge when only -points ends the window).
func rssEvery(d time.Duration) time.Duration {
	return min(10*time.Second, max(time.Second, d/60))
}

// dirBytes is the disk space allocated to the files under dir (blocks, not
// sizes: Badger preallocates its memtable and value-log files sparsely).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// disk is what the data directory holds after a mode: the log (JetStream's
// store, all streams) and the read model (Badger).
type disk struct{ log, readModel int64 }

func (s *server) disk() (disk, bool) {
	if s.dataDir == "" {
		return disk{}, false
	}
	return disk{log: dirBytes(filepath.Join(s.dataDir, "nats")), readModel: dirBytes(filepath.Join(s.dataDir, "readmodel"))}, true
}

// pressure counts, client side, the answers that slow a writer down: 429
// (Retry-After) and 503; the server's own counts of held requests come from
// ingest.BackPressure when the server runs in this process.
type pressure struct {
	base                 http.RoundTripper
	tooMany, unavailable atomic.Int64
}

func (p *pressure) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(r)
	if err == nil {
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			p.tooMany.Add(1)
		case http.StatusServiceUnavailable:
			p.unavailable.Add(1)
		}
	}
	return resp, err
}

// pressureCounts is a snapshot of the back-pressure counters.
type pressureCounts struct {
	tooMany, unavailable int64
	server               ingest.BackPressureCounts
}

func (s *server) pressureNow() pressureCounts {
	c := pressureCounts{tooMany: s.press.tooMany.Load(), unavailable: s.press.unavailable.Load()}
	if s.inProcess {
		c.server = ingest.BackPressure()
	}
	return c
}

func (c pressureCounts) sub(o pressureCounts) pressureCounts {
	return pressureCounts{tooMany: c.tooMany - o.tooMany, unavailable: c.unavailable - o.unavailable,
		server: ingest.BackPressureCounts{Refused: c.server.Refused - o.server.Refused, Held: c.server.Held - o.server.Held,
			Behind: c.server.Behind - o.server.Behind, HeldFor: c.server.HeldFor - o.server.HeldFor}}
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// rssLine summarises samples: first, at each quarter of the points, last,
// and the largest.
func rssLine(ss []rssSample) string {
	if len(ss) == 0 {
		return "no samples"
	}
	var peak rssSample
	for _, s := range ss {
		if s.rss > peak.rss {
			peak = s
		}
	}
	last := ss[len(ss)-1]
	var parts []string
	shown := map[int]bool{}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
		i := min(len(ss)-1, int(q*float64(len(ss)-1)+0.5))
		if shown[i] {
			continue
		}
		shown[i] = true
		s := ss[i]
		parts = append(parts, fmt.Sprintf("%.0fs/%s pts: %s (anon %s)", s.secs, si(float64(s.points)), mib(s.rss), mib(s.anon)))
	}
	return fmt.Sprintf("%s; max %s (anon %s) at %.0fs (%s pts); last %s (anon %s)", strings.Join(parts, ", "),
		mib(peak.rss), mib(peak.anon), peak.secs, si(float64(peak.points)), mib(last.rss), mib(last.anon))
}
