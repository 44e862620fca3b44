package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/schollz/progressbar/v3"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// DigestDir prints the digest of the read model in dir, which no process
// may have open (Badger allows one process per directory).
func DigestDir(dir string, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		return fmt.Errorf("no read model in %s: %w", dir, err)
	}
	st, err := projections.Open(projections.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w (a running projector holds its directory: ask it with -nats.url, or the all-in-one over HTTP)", err)
	}
	defer st.Close()
	d, err := st.Digest()
	if err != nil {
		return err
	}
	return printJSON(out, query.ReadModelStatus{Dir: dir, Digest: &d})
}

// progressBar renders rebuild progress: events/s and the time left.
type progressBar struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

func (p *progressBar) update(pr query.RebuildProgress) {
	if p.bar == nil && pr.Total > 0 {
		p.bar = progressbar.NewOptions64(int64(pr.Total),
			progressbar.OptionSetWriter(p.out),
			progressbar.OptionSetDescription("rebuild "+pr.Dir),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.out) }),
		)
	}
	if p.bar != nil {
		_ = p.bar.Set64(int64(min(pr.Seq, pr.Total)))
		if pr.Done && pr.Error == "" {
			_ = p.bar.Finish()
		}
	}
}

// RebuildHTTP asks the all-in-one at base to rebuild its read model,
// showing the progress, and prints the new digest.
func RebuildHTTP(ctx context.Context, base, key string, out, status io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(base, "/")+"/api/v1/admin/readmodel/rebuild", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("rebuild: %s: %s", resp.Status, b)
	}
	bar := &progressBar{out: status}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var pr query.RebuildProgress
		if err := json.Unmarshal(sc.Bytes(), &pr); err != nil {
			return fmt.Errorf("rebuild: undecodable progress %q", sc.Bytes())
		}
		bar.update(pr)
		if pr.Done {
			if pr.Error != "" {
				return fmt.Errorf("rebuild failed: %s", pr.Error)
			}
			return printJSON(out, query.ReadModelStatus{ID: pr.ID, Dir: pr.Dir, Digest: pr.Digest})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	return errors.New("rebuild: the server stopped answering before the rebuild finished")
}

// DigestHTTP prints the digest of the all-in-one's read model, verified by
// a replay of the log when verify is set.
func DigestHTTP(ctx context.Context, base, key string, verify bool, out io.Writer) error {
	path := "/api/v1/admin/readmodel"
	if verify {
		path += "?verify=1"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("digest: %w (is Logbook running at %s?)", err, base)
	}
	defer resp.Body.Close()
	var st query.ReadModelStatus
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("digest: %s: %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("digest: undecodable answer %q", b)
	}
	if err := printJSON(out, st); err != nil {
		return err
	}
	if st.Verify != nil && !st.Verify.Equal {
		return errors.New("the live read model differs from a replay of the log")
	}
	return nil
}

// AdminNATS sends a read-model admin request (digest or verify) to every
// projector (or the one with id) and prints their answers, waiting up to
// wait for the first and a little for the others.
func AdminNATS(ctx context.Context, url, prefix, op, id string, wait time.Duration, out io.Writer, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("logbook-admin")}, opts...)...)
	if err != nil {
		return fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	defer nc.Close()
	answers, err := scatter(ctx, nc, bus.AdminSubject(prefix, op), id, wait, 2*time.Second)
	if err != nil {
		return err
	}
	if len(answers) == 0 {
		return errors.New("no projector answered")
	}
	failed := false
	for _, a := range answers {
		failed = failed || a.Error != "" || (a.Verify != nil && !a.Verify.Equal)
	}
	if err := printJSON(out, answers); err != nil {
		return err
	}
	if failed {
		return errors.New("a projector reported an error or a read model that differs from a replay")
	}
	return nil
}

// RebuildNATS asks every projector (or the one with id) to rebuild its
// read model, shows the progress of each, and prints the new digests.
func RebuildNATS(ctx context.Context, url, prefix, id string, out, status io.Writer, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("logbook-admin")}, opts...)...)
	if err != nil {
		return fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	defer nc.Close()
	progress := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(bus.ProgressSubject(prefix, "*"), progress)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	started, err := scatter(ctx, nc, bus.AdminSubject(prefix, "rebuild"), id, 2*time.Second, time.Second)
	if err != nil {
		return err
	}
	if len(started) == 0 {
		return errors.New("no projector answered")
	}
	pending := map[string]bool{}
	for _, s := range started {
		pending[s.ID] = true
	}
	bars := map[string]*progressBar{}
	var results []query.ReadModelStatus
	var failures []string
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-progress:
			var pr query.RebuildProgress
			if json.Unmarshal(m.Data, &pr) != nil || !pending[pr.ID] {
				continue
			}
			if len(started) == 1 {
				if bars[pr.ID] == nil {
					bars[pr.ID] = &progressBar{out: status}
				}
				bars[pr.ID].update(pr)
			}
			if pr.Done {
				delete(pending, pr.ID)
				if pr.Error != "" {
					failures = append(failures, pr.ID+": "+pr.Error)
				}
				results = append(results, query.ReadModelStatus{ID: pr.ID, Dir: pr.Dir, Digest: pr.Digest, Error: pr.Error})
				if len(started) > 1 {
					fmt.Fprintf(status, "projector %s: done\n", pr.ID)
				}
			}
		}
	}
	if err := printJSON(out, results); err != nil {
		return err
	}
	if len(failures) > 0 {
		return fmt.Errorf("rebuild failed: %s", strings.Join(failures, "; "))
	}
	return nil
}

// scatter publishes a request and gathers the answers: the first within
// first (verify replays the log first), the others until none came for
// more.
func scatter(ctx context.Context, nc *nats.Conn, subject, id string, first, more time.Duration) ([]query.ReadModelStatus, error) {
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(query.AdminRequest{ID: id})
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	var out []query.ReadModelStatus
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timer.C:
			return out, nil
		case m := <-replies:
			var st query.ReadModelStatus
			if err := json.Unmarshal(m.Data, &st); err != nil {
				return out, fmt.Errorf("undecodable answer %q", m.Data)
			}
			out = append(out, st)
			if id != "" {
				return out, nil
			}
			timer.Reset(more)
		}
	}
}

func printJSON(out io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
