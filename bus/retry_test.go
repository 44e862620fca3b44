package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/query"
)

func TestTransient(t *testing.T) {
	apiErr := func(code int, errCode jetstream.ErrorCode) error {
		return fmt.Errorf("wrapped: %w", &jetstream.APIError{Code: code, ErrorCode: errCode})
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nats.ErrNoResponders, true},
		{fmt.Errorf("read LB_EVENTS: %w", nats.ErrNoResponders), true},
		{nats.ErrTimeout, true},
		{context.DeadlineExceeded, true},
		{jetstream.ErrNoStreamResponse, true},
		{jetstream.ErrConsumerDeleted, true},
		{jetstream.ErrConsumerLeadershipChanged, true},
		{jetstream.ErrNoHeartbeat, true},
		{jetstream.ErrAsyncPublishTimeout, true},
		{jetstream.ErrConsumerNotFound, true},
		{nats.ErrConnectionReconnecting, true},
		{apiErr(503, 10008), true},  // JetStream system temporarily unavailable
		{apiErr(500, 10041), true},  // raft error
		{apiErr(400, 10176), true},  // atomic batch incomplete (a failover lost part of it)
		{apiErr(400, 10005), true},  // no suitable peers while one is down
		{apiErr(500, 10074), false}, // replicas 3 on a single server
		{apiErr(400, 10058), false}, // stream name in use with another configuration
		{jetstream.ErrStreamNotFound, false},
		{fmt.Errorf("append: %w", ErrConflict), false},
		{ErrAlreadyAppended, false},
		{ErrReordered, false},
		{context.Canceled, false},
		{nats.ErrConnectionClosed, false},
		{nats.ErrMaxPayload, false},
		{errors.New("decode event at seq 7: unknown event type"), false},
		{nil, false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// appendN appends n messages to the events stream.
func appendN(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	msgs := make([]Msg, n)
	for i := range msgs {
		msgs[i] = Msg{Subject: "lb.ev.a.p.x", ID: "m" + strconv.Itoa(i), Data: []byte(strconv.Itoa(i + 1))}
	}
	if _, err := AppendAll(context.Background(), js, msgs); err != nil {
		t.Fatal(err)
	}
}

// checkOnce reports whether got is 1..n, each once and in order.
func checkOnce(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("delivered %d messages, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("delivery %d is seq %d, want %d", i, seq, i+1)
		}
	}
}

// TestReadRecreatesLostConsumer: the read's consumer is deleted under it
// (as when its server goes away); the read goes on with a new one from
// where it was, every message once and in order.
func TestReadRecreatesLostConsumer(t *testing.T) {
	_, js := mustBus(t, DefaultConfig())
	appendN(t, js, 3000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []uint64
	deleted := 0
	err := Read(ctx, js, ReadOptions{Stream: EventsStream, Batch: 100}, func(b []Entry) error {
		for _, e := range b {
			if string(e.Data) != strconv.FormatUint(e.Seq, 10) {
				return fmt.Errorf("seq %d holds %q", e.Seq, e.Data)
			}
			got = append(got, e.Seq)
		}
		if len(got) >= 1000*(deleted+1) && deleted < 2 {
			deleted++
			s, err := js.Stream(ctx, EventsStream)
			if err != nil {
				return err
			}
			for name := range s.ListConsumers(ctx).Info() {
				if strings.HasPrefix(name.Name, "lb_read_") {
					if err := s.DeleteConsumer(ctx, name.Name); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 2 {
		t.Fatalf("deleted the consumer %d times, want 2", deleted)
	}
	checkOnce(t, got, 3000)
}

// TestReadMissingStreamFailsAtOnce: an error no retry fixes ends the read.
func TestReadMissingStreamFailsAtOnce(t *testing.T) {
	_, js := mustBus(t, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := Read(ctx, js, ReadOptions{Stream: "NO_SUCH_STREAM"}, func([]Entry) error { return nil })
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("err = %v, want stream not found", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s: a permanent error was retried", d)
	}
}

// TestFollowSurvivesServerRestart: a following read rides over its server
// being shut down and started again on the same port and store (its
// consumer is gone, the connection reconnects) and delivers what was
// appended before, during and after, once and in order.
func TestFollowSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	ns, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	port := ns.Addr().(*net.TCPAddr).Port
	nc, js, err := Connect(ClientURL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := EnsureTopology(ctx, js, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	appendN(t, js, 500)
	var mu sync.Mutex
	var got []uint64
	readErr := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() {
		readErr <- Read(rctx, js, ReadOptions{Stream: EventsStream, Batch: 50, Follow: true}, func(b []Entry) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range b {
				got = append(got, e.Seq)
			}
			return nil
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); count() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("read %d of %d", count(), n)
			}
		}
	}
	waitFor(500)
	ns.Shutdown()
	ns.WaitForShutdown()
	ns, err = StartEmbedded(EmbeddedOptions{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	// Appended once the connection is back (Append retries until then).
	msgs := make([]Msg, 500)
	for i := range msgs {
		msgs[i] = Msg{Subject: "lb.ev.a.p.x", ID: "n" + strconv.Itoa(i), Data: []byte(strconv.Itoa(501 + i))}
	}
	for _, m := range msgs {
		if _, err := Append(ctx, js, m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(1000)
	stop()
	if err := <-readErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("read ended with %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	checkOnce(t, got, 1000)
}

// fakePublisher answers async publishes from a script: fail lists the
// message ids whose first (async) publish fails; every other publish is
// stored at the next sequence.
type fakePublisher struct {
	fail map[string]bool
	seq  uint64
}

type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
	msg *nats.Msg
}

func (f fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f fakeFuture) Err() <-chan error            { return f.err }
func (f fakeFuture) Msg() *nats.Msg               { return f.msg }

func (p *fakePublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p.seq++
	return &jetstream.PubAck{Sequence: p.seq}, nil
}

func (p *fakePublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f := fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1), msg: m}
	if p.fail[string(m.Data)] {
		f.err <- jetstream.ErrAsyncPublishTimeout
		return f, nil
	}
	p.seq++
	f.ok <- &jetstream.PubAck{Sequence: p.seq}
	return f, nil
}

// TestAppendAllOrder: a message whose publish failed is retried after a
// later one was stored; that is harmless between different order keys and
// ErrReordered within one.
func TestAppendAllOrder(t *testing.T) {
	msgs := []Msg{{Subject: "s", ID: "1", Data: []byte("1"), OrderKey: "run-a"}, {Subject: "s", ID: "2", Data: []byte("2"), OrderKey: "run-b"}}
	seqs, err := AppendAll(context.Background(), &fakePublisher{fail: map[string]bool{"1": true}}, msgs)
	if err != nil || seqs[0] != 2 || seqs[1] != 1 {
		t.Fatalf("different keys: %v %v, want [2 1] and no error", seqs, err)
	}
	msgs[1].OrderKey = "run-a"
	if _, err := AppendAll(context.Background(), &fakePublisher{fail: map[string]bool{"1": true}}, msgs); !errors.Is(err, ErrReordered) {
		t.Fatalf("same key: err = %v, want ErrReordered", err)
	}
	seqs, err = AppendAll(context.Background(), &fakePublisher{}, msgs)
	if err != nil || seqs[0] != 1 || seqs[1] != 2 {
		t.Fatalf("no failure: %v %v", seqs, err)
	}
}

// TestNATSReaderAsksAgainAfterReconnect: a read in flight when the
// connection's server goes away is asked again once it is back, instead of
// waiting for an answer that was lost with the server.
func TestNATSReaderAsksAgainAfterReconnect(t *testing.T) {
	dir := t.TempDir()
	ns, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	port := ns.Addr().(*net.TCPAddr).Port
	url := ClientURL(ns)
	responder, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Close()
	var answer sync.Mutex
	answering := false
	got := make(chan struct{}, 10)
	if _, err := responder.Subscribe(ReadSubject("lb"), func(m *nats.Msg) {
		got <- struct{}{}
		answer.Lock()
		defer answer.Unlock()
		if answering {
			_ = m.Respond([]byte(`{"data":{"ok":true}}`))
		}
	}); err != nil {
		t.Fatal(err)
	}
	nc, _, err := Connect(url, "reader")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		data string
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		data, err := NATSReader{NC: nc, Subject: ReadSubject("lb")}.Read(ctx, query.Request{Op: query.OpWhoAmI})
		done <- result{string(data), err, time.Since(start)}
	}()
	<-got // the request is in flight, and will not be answered
	ns.Shutdown()
	ns.WaitForShutdown()
	answer.Lock()
	answering = true
	answer.Unlock()
	ns, err = StartEmbedded(EmbeddedOptions{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	r := <-done
	if r.err != nil || r.data != `{"ok":true}` {
		t.Fatalf("read across a reconnect: %q %v after %s", r.data, r.err, r.took)
	}
	if r.took > 15*time.Second {
		t.Fatalf("read took %s: it waited for the lost answer", r.took)
	}
}
