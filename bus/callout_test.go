package bus_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

const (
	keyAlice = "lb-alice00000000000000000000000000000000000000000000"
	keyBob   = "lb-bob0000000000000000000000000000000000000000000000"
)

// keys is a revocable key table standing in for the policy state.
type keys struct {
	mu sync.Mutex
	m  map[string]string // hash -> user
}

func (k *keys) auth(hash string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	u, ok := k.m[hash]
	return u, ok, nil
}

func (k *keys) revoke(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, policy.HashKey(key))
}

// mustServer starts the embedded server with auth and the callout service.
func mustServer(t *testing.T) (url string, k *keys) {
	t.Helper()
	url, k, _ = mustServerConn(t)
	return url, k
}

// mustServerConn is mustServer that also returns a connection of
// Logbook's components (full rights in bus.LogbookAccount).
func mustServerConn(t *testing.T) (url string, k *keys, nc *nats.Conn) {
	t.Helper()
	return mustServerIn(t, "")
}

// mustServerIn is mustServerConn with the callout placing clients in
// account (its default if "").
func mustServerIn(t *testing.T, account string) (url string, k *keys, nc *nats.Conn) {
	t.Helper()
	return mustServerWith(t, account, nil)
}

// mustServerWith is mustServerIn with configure applied to the callout
// before it serves.
func mustServerWith(t *testing.T, account string, configure func(*bus.Callout)) (url string, k *keys, nc *nats.Conn) {
	t.Helper()
	issuer, err := bus.GenerateIssuer()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := issuer.PublicKey()
	pw := bus.NewPassword()
	s, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Port: -1,
		Auth: &bus.EmbeddedAuth{User: "logbook", Password: pw, Issuer: pub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	url = bus.ClientURL(s)
	nc, err = nats.Connect(url, nats.UserInfo("logbook", pw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	k = &keys{m: map[string]string{policy.HashKey(keyAlice): "alice", policy.HashKey(keyBob): "bob"}}
	c := &bus.Callout{Issuer: issuer, Account: account, Subjects: events.Subjects{Prefix: "lb"}, Authenticate: k.auth,
		Kicker: bus.ServerKicker{S: s}}
	if configure != nil {
		configure(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, nc) }()
	t.Cleanup(func() { cancel(); <-done })
	// Wait until the service answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cc, err := nats.Connect(url, nats.Token(keyAlice))
		if err == nil {
			cc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("callout not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, k, nc
}

// asyncErrs collects a connection's asynchronous errors.
type asyncErrs struct {
	mu  sync.Mutex
	all []string
	ch  chan struct{}
}

func connect(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, *asyncErrs, error) {
	e := &asyncErrs{ch: make(chan struct{}, 100)}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		e.mu.Lock()
		e.all = append(e.all, err.Error())
		e.mu.Unlock()
		e.ch <- struct{}{}
	}), nats.NoReconnect())
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, e, err
}

func (e *asyncErrs) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case <-e.ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no error %q from the server", want)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if last := e.all[len(e.all)-1]; !strings.Contains(strings.ToLower(last), strings.ToLower(want)) {
		t.Fatalf("error %q, want one containing %q", last, want)
	}
}

func TestCalloutRefusesUnknownKeys(t *testing.T) {
	url, _ := mustServer(t)
	for _, opt := range []nats.Option{nats.Token("lb-wrong0000000000000000000000000000000000000000000"),
		nats.UserInfo("alice", "nope"), nats.UserInfo("logbook", "guess")} {
		if _, _, err := connect(t, url, opt); err == nil {
			t.Errorf("connected without a valid key")
		}
	}
	if _, _, err := connect(t, url); err == nil {
		t.Errorf("connected without credentials")
	}
}

func TestCalloutGrantsOwnProposalsOnly(t *testing.T) {
	url, _ := mustServer(t)
	for _, opt := range []nats.Option{nats.Token(keyAlice), nats.UserInfo("anything", keyAlice)} {
		nc, e, err := connect(t, url, opt, nats.CustomInboxPrefix(bus.InboxPrefix("alice")))
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("lb.in.alice.alice._.key_created", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.SubscribeSync(bus.InboxPrefix("alice") + ".x"); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, subj := range []string{"lb.ev.alice._.key_created", "lb.rej.alice._", "lb.in.bob.bob._.key_created",
			"$JS.API.STREAM.INFO.LB_EVENTS", "lb.read", "lb.decided.x"} {
			if err := nc.Publish(subj, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			e.wait(t, "permissions violation")
		}
		for _, subj := range []string{"_INBOX.>", "lb.>", ">", "_INBOX_bob.>"} {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			e.wait(t, "permissions violation")
		}
		nc.Close()
	}
}

func TestRevokedKeyIsDisconnected(t *testing.T) {
	url, k := mustServer(t)
	closed := make(chan struct{})
	nc, _, err := connect(t, url, nats.Token(keyAlice), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	k.revoke(keyAlice)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection of a revoked key is still open (status %v)", nc.Status())
	}
	if _, _, err := connect(t, url, nats.Token(keyAlice)); err == nil {
		t.Fatal("a revoked key connected again")
	}
}
