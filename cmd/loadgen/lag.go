package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// behindMetric is the edge's own measure of the read models' lag: the age
// of the oldest metric event it appended that a projector has not folded
// (ingest.Freshness). Sampled during the window, it is the server's share
// of freshness, without the client's buffer.
const behindMetric = "logbook_ingest_read_model_behind_seconds"

// sampleBehind scrapes the server's /metrics every 250 ms (a scrape runs
// the stream probes too: more often loads the server it measures) until ctx ends
// and returns the samples of behindMetric (none if the server has none).
func sampleBehind(ctx context.Context, s *server) func() []time.Duration {
	var out []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if d, ok := scrapeBehind(ctx, s); ok {
					out = append(out, d)
				}
			}
		}
	}()
	return func() []time.Duration { <-done; return out }
}

func scrapeBehind(ctx context.Context, s *server) (time.Duration, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.url+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, behindMetric+"{") && !strings.HasPrefix(line, behindMetric+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return time.Duration(v * float64(time.Second)), err == nil
	}
	return 0, false
}
