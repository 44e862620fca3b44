package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/client"
)

// result is one measured figure set of a load mode.
type result struct {
	mode         string
	seconds      float64 // the logging window
	sentRows     int64
	sentPoints   int64
	sentEvents   int64 // batches sent (one metrics event each)
	sentBytes    int64 // file_stream: bytes of history lines
	visibleAtEnd int64 // points visible through the query API at the end of the window
	drain        time.Duration
	readBack     int64 // points read back after the drain
	missing      int64 // sent but not read back
	fresh        []time.Duration
	behind       []time.Duration // the edge's read-model lag, sampled (sampleBehind)
	startsLoaded []time.Duration
	cpu0, cpu1   procStat
	rss          []rssSample // during the window and the drain
	disk         disk        // after the drain
	hasDisk      bool
	press        pressureCounts // during the window and the drain
	wall         time.Duration
	problems     []string
}

// measure runs the configured modes against s and prints the report.
func measure(ctx context.Context, c config, s *server, rep *report) error {
	// Run starts on an idle server.
	lat := make([]time.Duration, 0, c.starts)
	for i := 0; i < c.starts && ctx.Err() == nil; i++ {
		t := time.Now()
		if _, err := s.startRun(ctx, "start-"+strconv.Itoa(i)); err != nil {
			return fmt.Errorf("run start: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	rep.printStarts(lat)
	if c.modes["client"] {
		r, err := loadClient(ctx, c, s)
		if err != nil {
			return fmt.Errorf("client mode: %w", err)
		}
		rep.printLoad(r, s)
	}
	if c.modes["filestream"] {
		r, err := loadFileStream(ctx, c, s)
		if err != nil {
			return fmt.Errorf("filestream mode: %w", err)
		}
		rep.printLoad(r, s)
	}
	if c.memprofile != "" {
		if err := writeHeap(c.memprofile); err != nil {
			return err
		}
	}
	if c.modes["rebuild"] {
		if err := rebuild(ctx, c, s, rep); err != nil {
			return fmt.Errorf("rebuild mode: %w", err)
		}
	}
	rep.footer()
	return nil
}

// job is one simulated training job.
type job struct {
	id   string
	rows atomic.Int64
	// lastStep is stored before lastNanos, and probes load them in the
	// other order, so a probe's start time is never later than the Log
	// call of the step it waits for: freshness is never under-reported.
	lastStep  atomic.Int64
	lastNanos atomic.Int64
	err       error
}

// pace sleeps so that row i of a job logging at rate rows/s is not early.
func pace(start time.Time, i int64, rate float64) {
	if rate <= 0 || i%16 != 0 {
		return
	}
	due := start.Add(time.Duration(float64(i) / rate * 1e9))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

func loadClient(ctx context.Context, c config, s *server) (*result, error) {
	res := &result{mode: "client"}
	jobs := make([]*job, c.jobs)
	runs := make([]*client.Run, c.jobs)
	for i := range jobs {
		r, err := client.Init(ctx, client.Options{BaseURL: s.url, APIKey: s.userKey, Entity: s.entity, Project: s.project,
			Name: "job-" + strconv.Itoa(i), JobType: "loadgen", BatchRows: c.batch, FlushInterval: c.flush,
			Config: map[string]any{"job": i, "metrics": c.metrics}, HTTPClient: s.http})
		if err != nil {
			return nil, fmt.Errorf("init run: %w", err)
		}
		runs[i] = r
		jobs[i] = &job{id: r.ID}
		jobs[i].lastStep.Store(-1)
	}
	names := metricNames(c.metrics)
	var stop atomic.Bool
	budget := int64(math.MaxInt64)
	if c.maxPoints > 0 {
		budget = c.maxPoints / int64(c.jobs*c.metrics)
	}
	var wg sync.WaitGroup
	res.cpu0 = readProc(s.pid)
	ev0 := s.eventCount(ctx)
	press0 := s.pressureNow()
	start := time.Now()
	stopRSS := sampleRSS(s.pid, start, rssEvery(c.duration), func() int64 {
		var rows int64
		for _, j := range jobs {
			rows += j.rows.Load()
		}
		return rows * int64(c.metrics)
	})
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runs[i]
			vals := make(map[string]any, len(names))
			for step := int64(0); step < budget && !stop.Load(); step++ {
				for k, name := range names {
					vals[name] = 1/(1+float64(step)*1e-4) + float64(k)*0.0137
				}
				now := time.Now()
				if err := r.LogStep(step, vals); err != nil {
					if errors.Is(err, client.ErrBufferFull) {
						time.Sleep(time.Millisecond)
						step--
						continue
					}
					j.err = err
					return
				}
				j.rows.Store(step + 1)
				j.lastStep.Store(step)
				j.lastNanos.Store(now.UnixNano())
				pace(start, step, c.rate)
				if c.rate <= 0 && step%64 == 0 {
					// As fast as Logbook takes them: wait while more than
					// a few batches are buffered, rather than measure how
					// fast the client's buffer fills.
					for r.Buffered() > c.ahead*c.batch && !stop.Load() {
						time.Sleep(time.Millisecond)
					}
				}
			}
		}()
	}
	stopObserving := observe(ctx, s, jobs, res)
	progress(ctx, c, start, func() string {
		var rows int64
		for _, j := range jobs {
			rows += j.rows.Load()
		}
		return fmt.Sprintf("client: %d rows logged, %.0f points/s; proposals waiting %d, events %d",
			rows, float64(rows*int64(c.metrics))/time.Since(start).Seconds(), s.streamMsgs(ctx, bus.InboxStream), s.eventCount(ctx))
	}, func() bool {
		for _, j := range jobs {
			if j.rows.Load() < budget && j.err == nil {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
	res.sentEvents = s.eventCount(ctx) - ev0
	// What is visible at the end of the window.
	for _, j := range jobs {
		if d, err := s.run(ctx, j.id); err == nil {
			res.visibleAtEnd += d.Rows * int64(c.metrics)
		}
	}
	stopObserving()
	// Flush and finish every run, then wait until everything is visible.
	var fwg sync.WaitGroup
	for i, r := range runs {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			if err := r.Finish(); err != nil && jobs[i].err == nil {
				jobs[i].err = err
			}
		}()
	}
	fwg.Wait()
	for _, j := range jobs {
		res.sentRows += j.rows.Load()
		if j.err != nil {
			res.problems = append(res.problems, fmt.Sprintf("run %s: %v", j.id, j.err))
		}
	}
	res.sentPoints = res.sentRows * int64(c.metrics)
	if err := drain(ctx, c, s, jobs, res, start); err != nil {
		return nil, err
	}
	res.rss = stopRSS()
	res.press = s.pressureNow().sub(press0)
	res.disk, res.hasDisk = s.disk()
	return res, nil
}

// drain waits until every run shows every row it sent, then reads the
// points back: per-metric counts of every run, and the full history of the
// first and last metric of the first and last run.
func drain(ctx context.Context, c config, s *server, jobs []*job, res *result, start time.Time) error {
	end := start.Add(time.Duration(res.seconds * 1e9))
	deadline := time.Now().Add(max(5*time.Minute, 2*time.Duration(res.seconds*1e9)))
	for _, j := range jobs {
		for {
			d, err := s.run(ctx, j.id)
			if err != nil {
				return err
			}
			if d.Rows >= j.rows.Load() || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.drain = time.Since(end)
	res.cpu1 = readProc(s.pid)
	res.wall = time.Since(start)
	names := metricNames(c.metrics)
	for _, j := range jobs {
		d, err := s.run(ctx, j.id)
		if err != nil {
			return err
		}
		want := j.rows.Load()
		for _, n := range names {
			got := d.Metrics[n].Count
			res.readBack += got
			if got < want {
				res.missing += want - got
			}
		}
	}
	check := []*job{jobs[0], jobs[len(jobs)-1]}
	for _, j := range check {
		for _, n := range []string{names[0], names[len(names)-1]} {
			got, err := historyCount(ctx, s, j.id, n)
			if err != nil {
				return err
			}
			if want := j.rows.Load(); got != want {
				res.problems = append(res.problems, fmt.Sprintf("run %s metric %s: history has %d contiguous points from step 0, sent %d", j.id, n, got, want))
			}
		}
	}
	return nil
}

// historyCount reads a metric's whole history, page by page, and returns
// how many points it holds at steps 0, 1, 2, ... without a gap.
func historyCount(ctx context.Context, s *server, run, metric string) (int64, error) {
	var n int64
	for {
		var pts []struct {
			Step int64 `json:"step"`
		}
		q := "?metric=" + url.QueryEscape(metric) + "&min_step=" + strconv.FormatInt(n, 10) + "&limit=500000"
		if err := s.do(ctx, s.userKey, "GET", s.projectPath()+"/runs/"+run+"/history"+q, nil, &pts); err != nil {
			return n, err
		}
		for _, p := range pts {
			if p.Step != n {
				return n, nil
			}
			n++
		}
		if len(pts) < 500000 {
			return n, nil
		}
	}
}

// progress waits for the logging window (or done, or ctx), printing a line
// a second when -v is set.
func progress(ctx context.Context, c config, start time.Time, line func() string, done func() bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for time.Since(start) < c.duration && ctx.Err() == nil && !done() {
		<-t.C
		if c.verbose && time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Println("  ..", line())
		}
	}
}

// observe starts the freshness probes and the run starts under load; the
// returned function stops them.
func observe(ctx context.Context, s *server, jobs []*job, res *result) func() {
	// Freshness probes: note a job's last logged step and its time, poll
	// the run through the query API until that step is visible.
	probes := min(len(jobs), 4)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := p; ctx.Err() == nil; k += probes {
				j := jobs[k%len(jobs)]
				t0 := j.lastNanos.Load()
				step := j.lastStep.Load()
				if step < 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for ctx.Err() == nil {
					d, err := s.run(ctx, j.id)
					if err == nil && d.LastStep >= step {
						mu.Lock()
						res.fresh = append(res.fresh, time.Duration(time.Now().UnixNano()-t0))
						mu.Unlock()
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	behind := sampleBehind(ctx, s)
	// Run starts under load, ten a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			t := time.Now()
			if _, err := s.startRun(ctx, "loaded-start-"+strconv.Itoa(i)); err == nil {
				mu.Lock()
				res.startsLoaded = append(res.startsLoaded, time.Since(t))
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		res.behind = behind()
	}
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(f, 0)
}
