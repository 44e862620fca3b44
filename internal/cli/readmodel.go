package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// DigestDir prints the digest of the read model in dir, which no process
// may have open (Badger allows one process per directory).
func DigestDir(dir string, out io.Writer) error {
	dir = projections.LiveDir(dir)
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
	return printJSON(out, query.ReadModelStatus{Dir: dir, Seq: d.Seq, Digest: &d})
}

// ReadModelCommands are "digest" and "rebuild" of the all-in-one's read
// model.
func ReadModelCommands() []*Command {
	return []*Command{
		{Name: "digest", Flags: digestCmd, Summary: "hash the read model (and -verify it against a replay of the log)",
			Help: `Over HTTP (site admin key in LOGBOOK_API_KEY), or with -dir on the read model
of a stopped Logbook (-dir ./logbook-data/readmodel: a directory left by a
rebuild, readmodel.new, is found from the base name).`},
		{Name: "rebuild", Flags: rebuildCmd, Summary: "rebuild the read model from the log without downtime, with progress",
			Help: `Replays the log into a fresh directory next to the live read model, lets it
catch up, switches reads to it and removes the old one. Progress (events/s
over the last seconds, time left) goes to stderr, the new digest to stdout.`},
	}
}

func digestCmd(fs *flag.FlagSet) Action {
	dir := fs.String("dir", "", "the read model in this directory, which no process may have open (e.g. ./logbook-data/readmodel of a stopped Logbook)")
	verify := fs.Bool("verify", false, "also replay the log up to the read model's sequence and compare the digests")
	return func(ctx context.Context, e *Env, _ []string) error {
		if *dir != "" {
			return DigestDir(*dir, e.Out)
		}
		a, err := newAPI()
		if err != nil {
			return err
		}
		return DigestHTTP(ctx, a.base, a.key, *verify, e.Out)
	}
}

func rebuildCmd(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, _ []string) error {
		a, err := newAPI()
		if err != nil {
			return err
		}
		return RebuildHTTP(ctx, a.base, a.key, e.Out, e.Err)
	}
}

// progressBar shows rebuild progress: the events/s over the server's
// recent window and the time left, drawn in place on a terminal and a line
// every few seconds elsewhere.
type progressBar struct {
	out      io.Writer
	terminal bool
	last     time.Time
}

func newProgressBar(out io.Writer) *progressBar {
	return &progressBar{out: out, terminal: isTerminal(out)}
}

func (p *progressBar) update(pr query.RebuildProgress) {
	now := time.Now()
	if !pr.Done && now.Sub(p.last) < 200*time.Millisecond || !p.terminal && !pr.Done && now.Sub(p.last) < 5*time.Second {
		return
	}
	p.last = now
	line := pr.String()
	if p.terminal {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		if pr.Done {
			fmt.Fprintln(p.out)
		}
		return
	}
	fmt.Fprintln(p.out, line)
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
	bar := newProgressBar(status)
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
			return printJSON(out, query.ReadModelStatus{ID: pr.ID, Dir: pr.Dir, Seq: pr.Seq, Digest: pr.Digest})
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
					bars[pr.ID] = newProgressBar(status)
				}
				bars[pr.ID].update(pr)
			}
			if pr.Done {
				delete(pending, pr.ID)
				if pr.Error != "" {
					failures = append(failures, pr.ID+": "+pr.Error)
				}
				results = append(results, query.ReadModelStatus{ID: pr.ID, Dir: pr.Dir, Seq: pr.Seq, Digest: pr.Digest, Error: pr.Error})
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
