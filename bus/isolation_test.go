package bus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/internal/forgery"
)

// streamDigest hashes every message of a stream (sequence, subject,
// headers, data, time) and returns it with the stream's state.
func streamDigest(t *testing.T, js jetstream.JetStream, name string) string {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Sprintf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Sprintf("stream %s: %v", name, err)
	}
	h := sha256.New()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Sprintf("%s seq %d: %v", name, seq, err)
		}
		hdr, _ := json.Marshal(m.Header)
		fmt.Fprintf(h, "%d %s %s %d %s\n", m.Sequence, m.Subject, hdr, m.Time.UnixNano(), m.Data)
	}
	return fmt.Sprintf("first %d last %d msgs %d bytes %d digest %s", info.State.FirstSeq, info.State.LastSeq,
		info.State.Msgs, info.State.Bytes, hex.EncodeToString(h.Sum(nil)))
}

// TestReplySubjectCannotReachLogbookAccount is the reproduction of the
// reply-subject attack and its whole catalogue against the embedded server
// with AuthConf: a client with a valid key publishes its own proposal with
// the reply subject set to every subject of every stream, KV bucket and
// object store in Logbook's account, $JS.API verbs, $JS.ACK subjects of a
// live consumer, other users' proposals, lb.decided, lb.read, and with
// every JetStream header. Nothing but its own proposals may be stored, and
// no message may appear in Logbook's account on any subject but the
// proposal's and the private _R_ replies.
func TestReplySubjectCannotReachLogbookAccount(t *testing.T) {
	for _, f := range replyAttack(t, "") {
		t.Error(f)
	}
}

// TestReplySubjectAttackDetected is the control: with the clients placed
// in Logbook's own account (as before the isolation, with the same
// permissions), the same attack changes the protected streams and the
// upload signing key, and replyAttack reports it.
func TestReplySubjectAttackDetected(t *testing.T) {
	found := replyAttack(t, bus.LogbookAccount)
	for _, want := range []string{"stream LB_EVENTS changed", "stream LB_REJECTIONS changed", "stream KV_logbook_wandb changed",
		"upload signing key changed", "messages on lb.in.bob."} {
		if !slices.ContainsFunc(found, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("without isolation the attack did not show %q; it showed:\n%s", want, strings.Join(found, "\n"))
		}
	}
	t.Logf("without isolation: %d findings", len(found))
}

// replyAttack runs the attack with the callout placing clients in account
// and returns what it found stored or published where it must not be.
func replyAttack(t *testing.T, account string) (findings []string) {
	find := func(format string, args ...any) { findings = append(findings, fmt.Sprintf(format, args...)) }
	url, _, nc := mustServerIn(t, account)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureTopology(ctx, js, bus.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	// The W&B adapter's buckets, as it creates them.
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "logbook_wandb", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "upload_signing_key", []byte("0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "logbook_wandb_files", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutString(ctx, "alice/p/r/config.yaml", "lr: 1"); err != nil {
		t.Fatal(err)
	}
	// One event, one rejection, and a proposal the decider holds without
	// acknowledging it (its $JS.ACK subject is a target too).
	for _, m := range []struct{ subj, data string }{{"lb.ev.t1.p1.project_created", "{}"}, {"lb.rej.t1.p1", "{}"}, {"lb.in.bob.bob._.key_created", "{}"}} {
		if _, err := js.Publish(ctx, m.subj, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	decider, err := js.Consumer(ctx, bus.InboxStream, bus.DeciderConsumer)
	if err != nil {
		t.Fatal(err)
	}
	held, err := decider.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var heldAck string
	for m := range held.Messages() {
		heldAck = m.Reply()
	}
	if !strings.HasPrefix(heldAck, "$JS.ACK.") {
		t.Fatalf("the decider holds no proposal (reply %q)", heldAck)
	}
	consumerState := func() string {
		ci, err := decider.Info(ctx)
		if err != nil {
			return err.Error()
		}
		// (NumPending grows with every stored proposal.)
		return fmt.Sprintf("delivered %d ackfloor %d ackpending %d redelivered %d", ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered)
	}

	replies, err := forgery.Replies(ctx, js, "lb", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	replies = append(replies, heldAck, "lb.ev.t1.p1.run_started")
	headers := forgery.Headers("lb.ev.t1.p1.run_started")
	if len(replies) < 60 || len(headers) < 30 {
		t.Fatalf("only %d replies and %d header sets", len(replies), len(headers))
	}

	protected := []string{bus.EventsStream, bus.RejectionsStream, "KV_logbook_wandb", "OBJ_logbook_wandb_files"}
	before := map[string]string{}
	for _, s := range protected {
		before[s] = streamDigest(t, js, s)
	}
	consumer0 := consumerState()
	inbox0 := streamInfo(t, js, bus.InboxStream)

	var violations sync.Map
	alice, err := nats.Connect(url, nats.Token(keyAlice), nats.CustomInboxPrefix(bus.InboxPrefix("alice")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations.Store(err.Error(), true) }))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	// Everything published in Logbook's account while the attacks run.
	var mu sync.Mutex
	seen := map[string]int{}
	var foreignReplies []string
	spy, err := nc.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		key := m.Subject
		switch {
		case strings.HasPrefix(key, "_R_."):
			key = "_R_.*"
		case strings.HasPrefix(key, "$JS.EVENT."):
			key = "$JS.EVENT.>"
		case strings.HasPrefix(key, "_INBOX."):
			key = "_INBOX.*" // the gateway's JetStream acks
		}
		seen[key]++
		// What crossed the import from CLIENTS.
		if strings.HasPrefix(m.Subject, "lb.gw.") && m.Reply != "" && !strings.HasPrefix(m.Reply, "_R_.") {
			foreignReplies = append(foreignReplies, m.Reply)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	attempts := 0
	// The reproduction as reported: a key of a user who belongs to nothing.
	if err := alice.PublishMsg(&nats.Msg{Subject: "lb.in.alice.x.y.z", Reply: "lb.ev.t1.p1.run_started", Data: []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	attempts++
	for _, r := range replies {
		for _, h := range headers {
			msg := &nats.Msg{Subject: "lb.in.alice.alice._.key_created", Reply: r, Data: []byte(`{"stream":"junk","seq":1}`), Header: h.H}
			if err := alice.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
			attempts++
		}
	}
	if err := alice.Flush(); err != nil {
		t.Fatal(err)
	}
	// The gateway handles one message at a time, in order: once a last
	// request is answered, everything before it was handled. Then wait
	// until the spy sees no more traffic, and stop it before looking at the
	// streams (which is traffic of its own).
	if account == "" {
		if _, err := alice.Request("lb.in.alice.alice._.key_created", []byte("junk"), time.Minute); err != nil {
			t.Fatalf("the last request: %v", err)
		}
		attempts++
	}
	// Quiet means no new traffic for three samples in a row (1.5 s): a
	// loaded machine (the race detector, other tests) can pause the server
	// longer than one sample, which ended the control run early once.
	last, quiet := -1, 0
	for quiet < 3 {
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		n := 0
		for _, c := range seen {
			n += c
		}
		mu.Unlock()
		if n == last {
			quiet++
		} else {
			quiet = 0
		}
		last = n
	}
	spy.Unsubscribe()
	inbox1 := streamInfo(t, js, bus.InboxStream)

	for _, s := range protected {
		if after := streamDigest(t, js, s); after != before[s] {
			find("stream %s changed:\nbefore %s\nafter  %s", s, before[s], after)
		}
	}
	if e, err := kv.Get(ctx, "upload_signing_key"); err != nil || string(e.Value()) != "0123456789abcdef0123456789abcdef" || e.Revision() != 1 {
		find("the upload signing key changed: %v %v", e, err)
	}
	if c := consumerState(); c != consumer0 {
		find("the decider's consumer changed: %s -> %s", consumer0, c)
	}
	// The inbox holds only alice's proposals. (JetStream removes the
	// Nats-Request-Info header that names the publisher's account when it
	// stores a message, so the subject and data say whose they are.)
	s, _ := js.Stream(ctx, bus.InboxStream)
	stored := 0
	for seq := inbox0.last + 1; seq <= inbox1.last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("inbox seq %d: %v", seq, err)
		}
		stored++
		if !strings.HasPrefix(m.Subject, "lb.in.alice.") {
			find("inbox seq %d on %s: not alice's own proposal", seq, m.Subject)
		}
		if !bytes.Equal(m.Data, []byte(`{"stream":"junk","seq":1}`)) && !bytes.Equal(m.Data, []byte("junk")) {
			find("inbox seq %d holds %q: not what alice published", seq, m.Data)
		}
		// The gateway keeps no header but Nats-Msg-Id, scoped to alice.
		for k, v := range m.Header {
			if account == "" && (k != "Nats-Msg-Id" || len(v) != 1 || !strings.HasPrefix(v[0], "alice:")) {
				find("inbox seq %d carries the header %s: %v", seq, k, v)
			}
		}
	}
	if inbox1.first != inbox0.first || inbox1.msgs != inbox0.msgs+uint64(stored) {
		find("the inbox lost messages: %+v -> %+v with %d stored", inbox0, inbox1, stored)
	}
	mu.Lock()
	for subj, n := range seen {
		// Alice's proposals as they cross the import, the gateway storing
		// them (its acks on its _INBOX), its answers on private _R_ replies.
		if !strings.HasPrefix(subj, "lb.gw.in.alice.") && !strings.HasPrefix(subj, "lb.in.alice.") && subj != "_R_.*" && subj != "_INBOX.*" && subj != "$JS.EVENT.>" {
			find("%d messages on %s in Logbook's account", n, subj)
		}
	}
	// nats-server passes replies starting with $JS.ACK. through a service
	// import unchanged; the gateway answers only private _R_ replies, and
	// the consumer's unchanged state above shows nothing acked.
	for _, r := range foreignReplies {
		if !strings.HasPrefix(r, "$JS.ACK.") {
			find("a proposal reached Logbook's account with the reply %q (not a private _R_ mapping)", r)
		}
	}
	if account == "" && seen["_R_.*"] == 0 {
		t.Error("no acknowledgement went to a private _R_ reply: the test does not see them")
	}
	mu.Unlock()
	n := 0
	violations.Range(func(k, _ any) bool {
		n++
		if !strings.Contains(k.(string), "Permissions Violation") {
			t.Errorf("unexpected asynchronous error: %v", k)
		}
		return true
	})
	t.Logf("%d attempts (%d reply subjects x %d header sets + the reproduction); %d stored in the inbox as alice's; %d acks through _R_ replies; %d distinct server refusals; %d findings",
		attempts, len(replies), len(headers), stored, seen["_R_.*"], n, len(findings))
	if stored == 0 || attempts < 2000 {
		t.Errorf("%d stored of %d attempts", stored, attempts)
	}

	// A well-behaved client still gets its JetStream acknowledgement.
	ajs, err := jetstream.New(alice)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := ajs.Publish(ctx, "lb.in.alice.alice._.key_created", []byte("{}"), jetstream.WithMsgID("idempotent-1"))
	if err != nil || ack.Stream != bus.InboxStream {
		t.Fatalf("a client's own JetStream publish: %+v %v", ack, err)
	}
	again, err := ajs.Publish(ctx, "lb.in.alice.alice._.key_created", []byte("{}"), jetstream.WithMsgID("idempotent-1"))
	if err != nil || !again.Duplicate || again.Sequence != ack.Sequence {
		t.Fatalf("a retried publish with the same Nats-Msg-Id: %+v %v", again, err)
	}
	if slices.Contains(replies, "") {
		t.Fatal("empty reply in the catalogue")
	}
	return findings
}

type streamCounts struct{ first, last, msgs uint64 }

func streamInfo(t *testing.T, js jetstream.JetStream, name string) streamCounts {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return streamCounts{info.State.FirstSeq, info.State.LastSeq, info.State.Msgs}
}

// TestGatewayKeepsTheDeciderFetching: headers that nats.go's pull consumer
// interprets on delivery never reach the inbox through the gateway. The
// first half shows the hazard on a message stored directly (as the
// account isolation without the gateway stored them): a Nats-Pin-Id pins
// the consumer and every later pull is refused.
func TestGatewayKeepsTheDeciderFetching(t *testing.T) {
	url, _, nc := mustServerConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureTopology(ctx, js, bus.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	drain := func(cons jetstream.Consumer, want int) (got []string, errs []error) {
		for i := 0; i < want+2 && len(got) < want; i++ {
			msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			for m := range msgs.Messages() {
				got = append(got, string(m.Data()))
				_ = m.Ack()
			}
			if msgs.Error() != nil {
				errs = append(errs, msgs.Error())
			}
		}
		return got, errs
	}
	// The hazard, on a stream and consumer of their own.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe.>"}}); err != nil {
		t.Fatal(err)
	}
	pin := &nats.Msg{Subject: "probe.x", Data: []byte("pinned"), Header: nats.Header{"Nats-Pin-Id": []string{"x"}}}
	if _, err := js.PublishMsg(ctx, pin); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "probe.x", []byte("after")); err != nil {
		t.Fatal(err)
	}
	probe, err := js.CreateConsumer(ctx, "PROBE", jetstream.ConsumerConfig{Name: "probe", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if got, errs := drain(probe, 2); len(got) != 1 || len(errs) == 0 {
		t.Logf("a stored Nats-Pin-Id no longer stalls a pull consumer (got %v, errors %v); the gateway still strips it", got, errs)
	} else {
		t.Logf("stored directly, a Nats-Pin-Id stalls the consumer: got %v, then %v", got, errs[0])
	}

	// Through the gateway, as a client (with another user name in its
	// CONNECT: the callout's name for the key wins).
	alice, err := nats.Connect(url, nats.UserInfo("bob", keyAlice), nats.CustomInboxPrefix(bus.InboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	ajs, err := jetstream.New(alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*nats.Msg{
		{Data: []byte("pinned"), Header: nats.Header{"Nats-Pin-Id": []string{"x"}}},
		{Data: nil, Header: nats.Header{"Status": []string{"100"}, "Description": []string{"Idle Heartbeat"}}},
		{Data: nil, Header: nats.Header{"Status": []string{"409"}, "Description": []string{"Consumer Deleted"}}},
		{Data: []byte("after")},
	} {
		m.Subject = "lb.in.alice.alice._.key_created"
		if _, err := ajs.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish through the gateway: %v", err)
		}
	}
	decider, err := js.Consumer(ctx, bus.InboxStream, bus.DeciderConsumer)
	if err != nil {
		t.Fatal(err)
	}
	got, errs := drain(decider, 4)
	if !slices.Equal(got, []string{"pinned", "", "", "after"}) || len(errs) != 0 {
		t.Errorf("the decider's consumer got %q with errors %v; want all four proposals", got, errs)
	}
}

// TestGatewayRateLimitsUsers: a client publishing proposals over NATS
// faster than its user's limit gets a 429 JetStream error for each one
// over it, which is not stored; other users are not affected.
func TestGatewayRateLimitsUsers(t *testing.T) {
	var mu sync.Mutex
	used := map[string]int{}
	url, _, nc := mustServerWith(t, "", func(c *bus.Callout) {
		c.Allow = func(user string) (bool, time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			used[user]++
			return used[user] <= 3, 1500 * time.Millisecond
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureTopology(ctx, js, bus.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	publish := func(key, user string, n int) (stored int, limited []error) {
		c, err := nats.Connect(url, nats.Token(key), nats.CustomInboxPrefix(bus.InboxPrefix(user)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cjs, err := jetstream.New(c)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			_, err := cjs.Publish(ctx, "lb.in."+user+"."+user+"._.key_created", []byte("{}"))
			var apiErr *jetstream.APIError
			switch {
			case err == nil:
				stored++
			case errors.As(err, &apiErr) && apiErr.Code == 429 && strings.Contains(apiErr.Description, "retry in 1.5s"):
				limited = append(limited, err)
			default:
				t.Fatalf("publish %d as %s: %v", i, user, err)
			}
		}
		return stored, limited
	}
	if stored, limited := publish(keyAlice, "alice", 5); stored != 3 || len(limited) != 2 {
		t.Fatalf("alice: %d stored, %d limited (%v); want 3 and 2", stored, len(limited), limited)
	}
	if stored, limited := publish(keyBob, "bob", 2); stored != 2 || len(limited) != 0 {
		t.Fatalf("bob: %d stored, %d limited (%v); want 2 and 0", stored, len(limited), limited)
	}
	if got := streamInfo(t, js, bus.InboxStream); got.msgs != 5 {
		t.Fatalf("the inbox holds %d proposals, want 5 (3 of alice's, 2 of bob's)", got.msgs)
	}
}
