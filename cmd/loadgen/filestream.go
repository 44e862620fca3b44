package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadFileStream logs history lines through W&B's file_stream endpoint, the
// way wandb-core does: each job posts -batch lines of wandb-history.jsonl
// at increasing offsets.
func loadFileStream(ctx context.Context, c config, s *server) (*result, error) {
	res := &result{mode: "filestream"}
	jobs := make([]*job, c.jobs)
	for i := range jobs {
		id, err := s.startRun(ctx, "fs-job-"+strconv.Itoa(i))
		if err != nil {
			return nil, fmt.Errorf("start run: %w", err)
		}
		jobs[i] = &job{id: id}
		jobs[i].lastStep.Store(-1)
	}
	// Is the endpoint served at all?
	if err := s.fileStream(ctx, jobs[0].id, []byte(`{"files":{}}`)); err != nil {
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusNotFound && !strings.Contains(he.body, `"error"`) {
			return nil, fmt.Errorf("the W&B file_stream endpoint (POST /files/{entity}/{project}/{run}/file_stream) is not served by %s: %w", s.url, err)
		}
		return nil, fmt.Errorf("file_stream: %w", err)
	}
	lines := newHistoryLines(c.batch, metricNames(c.metrics))
	var stop atomic.Bool
	var sent atomic.Int64
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
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			step := int64(0)
			for !stop.Load() && (c.maxPoints <= 0 || step*int64(c.metrics*c.jobs) < c.maxPoints) {
				now := time.Now()
				var n int
				body, n = lines.body(body[:0], step, now)
				if err := s.fileStream(ctx, j.id, body); err != nil {
					if ctx.Err() == nil {
						j.err = err
					}
					return
				}
				step += int64(c.batch)
				sent.Add(int64(n))
				j.rows.Store(step)
				j.lastStep.Store(step - 1)
				j.lastNanos.Store(now.UnixNano())
				if c.rate > 0 { // rows/s per job
					time.Sleep(time.Until(start.Add(time.Duration(float64(step) / c.rate * 1e9))))
				}
			}
		}()
	}
	stopObserving := observe(ctx, s, jobs, res)
	progress(ctx, c, start, func() string {
		return fmt.Sprintf("filestream: %.1f MB/s of history lines", float64(sent.Load())/1e6/time.Since(start).Seconds())
	}, func() bool {
		for _, j := range jobs {
			if j.err == nil && !stop.Load() {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
	res.sentEvents = s.eventCount(ctx) - ev0
	for _, j := range jobs {
		if d, err := s.run(ctx, j.id); err == nil {
			res.visibleAtEnd += d.Rows * int64(c.metrics)
		}
	}
	stopObserving()
	for _, j := range jobs {
		res.sentRows += j.rows.Load()
		if j.err != nil {
			res.problems = append(res.problems, fmt.Sprintf("run %s: %v", j.id, j.err))
		}
	}
	res.sentPoints = res.sentRows * int64(c.metrics)
	res.sentBytes = sent.Load()
	defer func() {
		res.rss = stopRSS()
		res.press = s.pressureNow().sub(press0)
		res.disk, res.hasDisk = s.disk()
	}()
	if err := drain(ctx, c, s, jobs, res, start); err != nil {
		return nil, err
	}
	return res, nil
}

// historyLines is the generator's history lines, encoded once: the
// metric values of line i of a request are the same in every request, so
// the generator spends its CPU on the steps and times alone and the
// figures measure the server (formatting 20 floats per line cost as much
// CPU as a quarter of the server's work).
type historyLines struct {
	tails [][]byte // line i after its _timestamp, escaped as a JSON string
	sizes []int    // the unescaped length of tails[i]
}

func newHistoryLines(n int, names []string) historyLines {
	var h historyLines
	for i := range n {
		var tail []byte
		for k, name := range names {
			tail = append(tail, `,\"`...)
			tail = append(tail, name...)
			tail = append(tail, `\":`...)
			tail = strconv.AppendFloat(tail, 1/(1+float64(i)*1e-4)+float64(k)*0.0137, 'g', -1, 64)
		}
		tail = append(tail, '}')
		h.tails = append(h.tails, tail)
		h.sizes = append(h.sizes, len(tail)-bytes.Count(tail, []byte{'\\'}))
	}
	return h
}

// body appends a file_stream request of the history lines from step on
// and returns it with the byte count of the lines.
func (h historyLines) body(b []byte, step int64, now time.Time) ([]byte, int) {
	b = append(b, `{"files":{"wandb-history.jsonl":{"offset":`...)
	b = strconv.AppendInt(b, step, 10)
	b = append(b, `,"content":[`...)
	ts := strconv.AppendFloat(nil, float64(now.UnixNano())/1e9, 'f', 6, 64)
	total := 0
	for i, tail := range h.tails {
		st := step + int64(i)
		if i > 0 {
			b = append(b, ',')
		}
		start := len(b)
		b = append(b, `"{\"_step\":`...)
		b = strconv.AppendInt(b, st, 10)
		b = append(b, `,\"_runtime\":`...)
		b = strconv.AppendInt(b, st, 10)
		b = append(b, `e-2,\"_timestamp\":`...)
		b = append(b, ts...)
		total += len(b) - start - 1 - 6 + h.sizes[i] // less the quote and the 6 backslashes
		b = append(b, tail...)
		b = append(b, '"')
	}
	return append(b, "]}}}"...), total
}

// fileStream posts one file_stream request with W&B's Basic api:<key>.
func (s *server) fileStream(ctx context.Context, run string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", s.url+"/files/"+s.entity+"/"+s.project+"/"+run+"/file_stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("api:"+s.userKey)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return &httpError{status: resp.StatusCode, body: strings.TrimSpace(string(data))}
	}
	return nil
}
