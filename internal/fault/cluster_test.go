package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/client"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/query"
)

// cluster is the 3-node JetStream cluster of deploy/cluster (its
// configuration files as shipped, with loopback ports picked at random and
// the store directories in the test's directory), nats-server processes
// that are killed with SIGKILL and restarted on the same ports and store.
type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	nodes []*clusterNode
	urls  string   // every node's client URL, comma separated
	env   []string // what Logbook's processes need: URLs, replicas, NATS secrets
	nc    *nats.Conn
	js    jetstream.JetStream
}

type clusterNode struct {
	name string // server_name
	port int    // client port
	proc *proc
}

func mustCluster(t *testing.T) *cluster {
	t.Helper()
	bin := mustBinaries(t)
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The secrets deploy/auth.conf reads, as `logbook nats-secrets` prints them.
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"nats-secrets"}, &out); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	password := ""
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		kv := strings.TrimPrefix(line, "export ")
		secrets = append(secrets, kv)
		if v, ok := strings.CutPrefix(kv, "LOGBOOK_NATS_PASSWORD="); ok {
			password = v
		}
	}
	auth, err := os.ReadFile(filepath.Join(root, "deploy", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cluster"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o644); err != nil {
		t.Fatal(err)
	}
	// Ports of deploy/cluster: clients 4222-4224, routes 6222-6224,
	// monitoring 8222-8224 (dropped: nothing here uses it).
	var repl []string
	var ports []int
	for i := 0; i < 3; i++ {
		cp, rp := freePort(t), freePort(t)
		ports = append(ports, cp)
		repl = append(repl, fmt.Sprintf("127.0.0.1:%d", 4222+i), fmt.Sprintf("127.0.0.1:%d", cp),
			fmt.Sprintf("127.0.0.1:%d", 6222+i), fmt.Sprintf("127.0.0.1:%d", rp),
			fmt.Sprintf("http: 127.0.0.1:%d", 8222+i), "# http: (monitoring off in the test)")
	}
	c := &cluster{t: t, bin: bin, dir: dir}
	var urls []string
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("n%d", i+1)
		conf, err := os.ReadFile(filepath.Join(root, "deploy", "cluster", name+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		store := fmt.Sprintf(`store_dir: "./nats-%s"`, name)
		if !bytes.Contains(conf, []byte(store)) || !bytes.Contains(conf, []byte(fmt.Sprintf("127.0.0.1:%d", 4222+i))) {
			t.Fatalf("deploy/cluster/%s.conf changed shape: no %s or client port %d", name, store, 4222+i)
		}
		conf = bytes.Replace(conf, []byte(store), []byte("store_dir: "+strconv.Quote(filepath.Join(dir, "nats-"+name))), 1)
		conf = []byte(strings.NewReplacer(repl...).Replace(string(conf)))
		path := filepath.Join(dir, "cluster", name+".conf")
		if err := os.WriteFile(path, conf, 0o644); err != nil {
			t.Fatal(err)
		}
		n := &clusterNode{name: "logbook-" + name, port: ports[i]}
		n.proc = startProc(t, "nats-"+name, secrets, filepath.Join(bin, "nats-server"), "-c", path)
		c.nodes = append(c.nodes, n)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	c.urls = strings.Join(urls, ",")
	c.env = append([]string{"LOGBOOK_NATS_URL=" + c.urls, "LOGBOOK_NATS_REPLICAS=3", "LOGBOOK_ADMIN_API_KEY=" + adminKey, "LOGBOOK_LOG_LEVEL=info"}, secrets...)
	for _, n := range c.nodes {
		c.waitListening(n)
	}
	c.nc, err = nats.Connect(c.urls, nats.UserInfo("logbook", password), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "JetStream cluster ready", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.js.AccountInfo(ctx)
		return err == nil, fmt.Sprint(err)
	})
	return c
}

func (c *cluster) waitListening(n *clusterNode) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, n.name+" listening", func() (bool, string) {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil, fmt.Sprint(err)
	})
}

// leader returns the node leading stream's Raft group.
func (c *cluster) leader(stream string) *clusterNode {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return nil
	}
	for _, n := range c.nodes {
		if n.name == info.Cluster.Leader {
			return n
		}
	}
	return nil
}

// healthy reports whether every stream and the decider's consumer have a
// leader and two current replicas: the cluster may lose a node again.
func (c *cluster) healthy() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{bus.InboxStream, bus.EventsStream, bus.RejectionsStream} {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", name, err)
		}
		if ok, why := replicasCurrent(info.Cluster); !ok {
			return false, name + ": " + why
		}
		if name == bus.InboxStream {
			ci, err := s.Consumer(ctx, bus.DeciderConsumer)
			if err != nil {
				return false, fmt.Sprintf("decider consumer: %v", err)
			}
			info, err := ci.Info(ctx)
			if err != nil {
				return false, fmt.Sprintf("decider consumer: %v", err)
			}
			if ok, why := replicasCurrent(info.Cluster); !ok {
				return false, "decider consumer: " + why
			}
		}
	}
	return true, ""
}

func replicasCurrent(ci *jetstream.ClusterInfo) (bool, string) {
	if ci == nil || ci.Leader == "" {
		return false, "no leader"
	}
	if len(ci.Replicas) != 2 {
		return false, fmt.Sprintf("%d replicas besides the leader", len(ci.Replicas))
	}
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return false, fmt.Sprintf("replica %s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag)
		}
	}
	return true, ""
}

// readProbe reads through query every 100 ms and keeps each answer.
type readProbe struct {
	mu    sync.Mutex
	reads []probeRead
}

type probeRead struct {
	at     time.Time // when the answer (or the failure) came
	status int       // 0: no answer
}

func (p *readProbe) run(ctx context.Context, url, key string) {
	hc := &http.Client{Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		status := 0
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := hc.Do(req); err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.reads = append(p.reads, probeRead{time.Now(), status})
		p.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// outage returns, for the reads that ended in [from, to) (a read is
// counted when its answer or failure comes: one sent just before a node
// loss and lost with it fails after it): how long after from the last
// failure came (0 if none failed), whether a read after it answered 200,
// how many reads there were and how many failed.
func (p *readProbe) outage(from, to time.Time) (last time.Duration, recovered bool, n, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.reads {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		n++
		if r.status != 200 {
			failed++
			last, recovered = r.at.Sub(from), false
		} else {
			recovered = true
		}
	}
	return last, recovered, n, failed
}

// timeline describes the reads that ended in [from, to): offset and
// status of each run of equal answers.
func (p *readProbe) timeline(from, to time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	prev := -1
	for _, r := range p.reads {
		if r.at.Before(from) || !r.at.Before(to) || r.status == prev {
			continue
		}
		prev = r.status
		fmt.Fprintf(&b, "%s:%d ", r.at.Sub(from).Round(10*time.Millisecond), r.status)
	}
	return b.String()
}

// TestClusterNodeLoss (issue 11, section 3): on the 3-node cluster of
// deploy/cluster with R3 streams, ingest, two projectors and query as
// separate processes, the Go client logs 4 runs x 20,000 rows while one
// node at a time is killed with SIGKILL and restarted on the same ports and
// store, four times, twice the LB_EVENTS leader. No component exits; reads
// through query answer 200 again within 10 s of each node loss; every row
// is in the read model once, in step order; both projectors have the same
// digest. -long: 12 node losses, 4 runs x 100,000 rows.
func TestClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: starts a 3-node nats-server cluster and kills its nodes")
	}
	const runs = 4
	rowsPerRun, losses := 20_000, 4
	if *long {
		rowsPerRun, losses = 100_000, 12
	}
	// A node loss every cycle: a few seconds down, restart, wait until
	// every stream is back at three current replicas, and at least
	// cycleMin from the loss (so that "200 again within 10 s" is observed
	// before the next loss).
	const down, cycleMin, readBound = 3 * time.Second, 13 * time.Second, 10 * time.Second
	c := mustCluster(t)
	ingestAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	queryAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// No crash sweeps: the log stands still while the read models are compared.
	components := []*proc{
		startProc(t, "ingest", c.env, filepath.Join(c.bin, "ingest"), "-http.addr", ingestAddr, "-runs.crash-after", "87600h"),
		startProc(t, "projector-1", c.env, filepath.Join(c.bin, "projector"), "-data.dir", filepath.Join(c.dir, "readmodel-1")),
		startProc(t, "projector-2", c.env, filepath.Join(c.bin, "projector"), "-data.dir", filepath.Join(c.dir, "readmodel-2")),
		startProc(t, "query", c.env, filepath.Join(c.bin, "query"), "-http.addr", queryAddr),
	}
	exited := func() []string {
		var out []string
		for _, p := range components {
			if p.exited() {
				out = append(out, fmt.Sprintf("%s exited:\n%s", p.name, tail(p.out.String(), 3000)))
			}
		}
		return out
	}
	// Before any fault, components exited within seconds of starting
	// (issue 11): wait for ingest to authenticate the admin, and for 3 s.
	s := &sys{t: t, bin: c.bin, dir: c.dir, natsURL: c.urls, ingestURL: "http://" + ingestAddr, env: c.env, nc: c.nc, js: c.js}
	started := time.Now()
	eventually(t, 90*time.Second, "ingest ready, no component exited", func() (bool, string) {
		if ex := exited(); len(ex) > 0 {
			t.Fatalf("components exited before any fault:\n%s", strings.Join(ex, "\n"))
		}
		st, _ := s.call(adminKey, "POST", "/api/v1/users", map[string]string{})
		return st == 400 && time.Since(started) > 3*time.Second, fmt.Sprintf("ingest answers %d", st)
	})
	alice := s.user("alice")
	s.must(alice, "POST", "/api/v1/projects", map[string]string{"entity": "alice", "name": "p"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probe := &readProbe{}
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		probe.run(ctx, "http://"+queryAddr+"/api/v1/projects/alice/p/runs", alice)
	}()
	eventually(t, 30*time.Second, "query answering", func() (bool, string) {
		_, ok, _, _ := probe.outage(time.Now().Add(-time.Second), time.Now())
		return ok, "no 200 yet"
	})

	// The runs: Init before the faults (Init is not retried across
	// failures by the client), rows logged at a steady pace across the
	// node losses, the last tenth only after the last one.
	var rs []*client.Run
	for i := 0; i < runs; i++ {
		ictx, icancel := context.WithTimeout(ctx, 60*time.Second)
		r, err := client.Init(ictx, client.Options{BaseURL: "http://" + ingestAddr, APIKey: alice, Entity: "alice", Project: "p",
			Name: fmt.Sprintf("r%d", i), FlushInterval: 200 * time.Millisecond})
		icancel()
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	// Rows for each node loss are logged from the moment the node is
	// killed, paced over most of the cycle (so they flow while it is
	// down, while it restarts and while leaders are elected); the last
	// tenth after the last loss.
	lossStarted := make([]chan struct{}, losses)
	for k := range lossStarted {
		lossStarted[k] = make(chan struct{})
	}
	killsDone := make(chan struct{})
	var logged atomic.Int64
	held := rowsPerRun / 10
	perLoss := (rowsPerRun - held) / losses
	var logWG sync.WaitGroup
	logStart := time.Now()
	for _, r := range rs {
		logWG.Add(1)
		go func() {
			defer logWG.Done()
			var partStart time.Time
			for step := 0; step < rowsPerRun; step++ {
				switch k := step / perLoss; {
				case step == perLoss*losses:
					<-killsDone
				case k < losses && step%perLoss == 0:
					<-lossStarted[k]
					partStart = time.Now()
				case k < losses && step%50 == 0:
					time.Sleep(time.Until(partStart.Add(cycleMin * 3 / 4 * time.Duration(step%perLoss) / time.Duration(perLoss))))
				}
				if err := r.LogStep(int64(step), map[string]any{"acc": step, "loss": 1 / float64(step+1)}); err != nil {
					t.Errorf("log %s step %d: %v", r.ID, step, err)
					return
				}
				logged.Add(1)
			}
		}()
	}

	// The node losses.
	type loss struct {
		node     string
		leader   bool // it led LB_EVENTS
		at       time.Time
		logged   int64 // rows logged by the time the node restarted
		healedIn time.Duration
	}
	var done []loss
	killed := map[string]bool{}
	for k := 0; k < losses; k++ {
		leader := c.leader(bus.EventsStream)
		if leader == nil {
			t.Fatal("LB_EVENTS has no leader before a node loss")
		}
		victim := leader
		if k%2 == 1 {
			// A node that does not lead LB_EVENTS, one not lost yet if any.
			victim = nil
			for _, n := range c.nodes {
				if n != leader && (victim == nil || killed[victim.name] && !killed[n.name]) {
					victim = n
				}
			}
		}
		killed[victim.name] = true
		l := loss{node: victim.name, leader: victim == leader, at: time.Now()}
		victim.proc.kill()
		close(lossStarted[k])
		time.Sleep(down)
		l.logged = logged.Load()
		victim.proc.start()
		c.waitListening(victim)
		eventually(t, 90*time.Second, "cluster healthy after restarting "+victim.name, c.healthy)
		l.healedIn = time.Since(l.at)
		done = append(done, l)
		time.Sleep(time.Until(l.at.Add(cycleMin)))
		if ex := exited(); len(ex) > 0 {
			t.Fatalf("after losing %s:\n%s", victim.name, strings.Join(ex, "\n"))
		}
	}
	close(killsDone)
	logWG.Wait()
	for _, r := range rs {
		if err := r.Finish(); err != nil {
			t.Errorf("finish %s: %v", r.ID, err)
		}
	}
	end := time.Now()
	cancel()
	<-probeDone
	if t.Failed() {
		return
	}

	// Reads: 200 again within readBound of each loss, and from then on
	// until the next one.
	leaderLosses := 0
	var worst time.Duration
	for i, l := range done {
		next := end
		if i+1 < len(done) {
			next = done[i+1].at
		}
		last, recovered, n, failed := probe.outage(l.at, next)
		if l.leader {
			leaderLosses++
		}
		worst = max(worst, last)
		t.Logf("loss %d: %s (LB_EVENTS leader: %v) %d rows logged when it restarted; healthy again after %s; %d reads, %d failed, the last failure %s after the loss",
			i+1, l.node, l.leader, l.logged, l.healedIn.Round(time.Millisecond), n, failed, last.Round(time.Millisecond))
		if !recovered || last >= readBound {
			t.Errorf("loss %d (%s): reads failed until %s after the loss (recovered: %v), want 200 again within %s; reads: %s",
				i+1, l.node, last, recovered, readBound, probe.timeline(l.at, next))
		}
	}
	if worst > 0 {
		// Some reads failed: what query and the projectors logged.
		for _, p := range components[1:] {
			t.Logf("--- %s (tail):\n%s", p.name, tail(p.out.String(), 2500))
		}
	}
	if leaderLosses < losses/2 {
		t.Errorf("%d of %d losses hit the LB_EVENTS leader, want at least %d", leaderLosses, losses, losses/2)
	}

	// Both projectors catch up with the log and hold the same read model.
	eventsLast := s.streamInfo(bus.EventsStream).State.LastSeq
	type status struct {
		ID     string `json:"id"`
		Seq    uint64 `json:"seq"`
		Digest *struct {
			Digest string `json:"digest"`
			Seq    uint64 `json:"seq"`
		} `json:"digest"`
		Error string `json:"error"`
	}
	eventually(t, 2*time.Minute, "both projectors at the end of the log", func() (bool, string) {
		var st []status
		out, err := s.tryCLI("projector", "status", "-nats.url", c.urls)
		if err == nil {
			err = json.Unmarshal(out, &st)
		}
		if err != nil || len(st) != 2 {
			return false, fmt.Sprintf("%+v %v", st, err)
		}
		return st[0].Seq == eventsLast && st[1].Seq == eventsLast, fmt.Sprintf("%+v, log at %d", st, eventsLast)
	})
	var digests []status
	if err := json.Unmarshal(s.runCLI("projector", "digest", "-nats.url", c.urls), &digests); err != nil {
		t.Fatal(err)
	}
	if len(digests) != 2 || digests[0].Digest == nil || digests[1].Digest == nil || *digests[0].Digest != *digests[1].Digest {
		t.Fatalf("the projectors' digests differ: %+v", digests)
	}

	// 0 rows lost, 0 doubled: each run's history through query is steps
	// 0..rowsPerRun-1, once each, in order, with the values logged.
	var lost, doubled int
	for _, r := range rs {
		var v query.RunView
		resp := mustGet(t, "http://"+queryAddr+"/api/v1/projects/alice/p/runs/"+r.ID, alice)
		if err := json.Unmarshal(resp, &v); err != nil {
			t.Fatal(err)
		}
		if v.Rows != int64(rowsPerRun) || v.LastStep != int64(rowsPerRun-1) || v.State != "finished" {
			t.Errorf("run %s: %d rows, last step %d, %s; want %d rows, last step %d, finished", r.ID, v.Rows, v.LastStep, v.State, rowsPerRun, rowsPerRun-1)
		}
		csv := mustGet(t, "http://"+queryAddr+"/api/v1/projects/alice/p/runs/"+r.ID+"/export?format=csv&metrics=acc", alice)
		seen := make([]int, rowsPerRun)
		prev := int64(-1)
		sc := bufio.NewScanner(bytes.NewReader(csv))
		for line := 0; sc.Scan(); line++ {
			f := strings.Split(sc.Text(), ",")
			if line == 0 {
				if !slices.Equal(f, []string{"step", "time", "acc"}) {
					t.Fatalf("export header %q", sc.Text())
				}
				continue
			}
			step, err1 := strconv.ParseInt(f[0], 10, 64)
			acc, err2 := strconv.ParseFloat(f[2], 64)
			if err1 != nil || err2 != nil || step < 0 || step >= int64(rowsPerRun) || acc != float64(step) {
				t.Fatalf("run %s: export line %q", r.ID, sc.Text())
			}
			if step <= prev {
				t.Errorf("run %s: step %d after %d in the export", r.ID, step, prev)
			}
			prev = step
			seen[step]++
		}
		for _, n := range seen {
			if n == 0 {
				lost++
			}
			if n > 1 {
				doubled += n - 1
			}
		}
	}
	if lost != 0 || doubled != 0 {
		t.Errorf("%d rows lost, %d doubled", lost, doubled)
	}
	if ex := exited(); len(ex) > 0 {
		t.Errorf("components exited:\n%s", strings.Join(ex, "\n"))
	}
	t.Logf("cluster node loss: %d losses (%d of the LB_EVENTS leader), %d runs x %d rows; %d lost, %d doubled; digests equal (%s at seq %d); longest read outage %s; no component exited; %s in all",
		len(done), leaderLosses, runs, rowsPerRun, lost, doubled, digests[0].Digest.Digest[:12], digests[0].Digest.Seq, worst.Round(time.Millisecond), time.Since(logStart).Round(time.Second))
}

func mustGet(t *testing.T, url, key string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b.String())
	}
	return b.Bytes()
}
