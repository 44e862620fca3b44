package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/logbook/logbook/events"
)

// TestDeployAuthConfIsAuthConf: deploy/auth.conf (external server and
// cluster) is the configuration the embedded server runs.
func TestDeployAuthConfIsAuthConf(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != AuthConf {
		t.Fatal("deploy/auth.conf differs from bus.AuthConf: write bus.AuthConf to it")
	}
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	for _, p := range []string{subj.AllProposals(), ClientProposals(subj)} {
		if !strings.Contains(AuthConf, `"`+p+`"`) {
			t.Fatalf("AuthConf does not name %s", p)
		}
	}
}

// TestAuthConfAccounts checks what the configuration means to a running
// nats-server: JetStream only in LOGBOOK, the components' user there,
// LOGBOOK exporting the proposal subjects, the callout asked in LOGBOOK.
func TestAuthConfAccounts(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	pub, _ := issuer.PublicKey()
	s, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1,
		Auth: &EmbeddedAuth{User: "logbook", Password: "pw", Issuer: pub}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	lb, err := s.LookupAccount(LogbookAccount)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.LookupAccount(ClientsAccount)
	if err != nil {
		t.Fatal(err)
	}
	if !lb.JetStreamEnabled() || cl.JetStreamEnabled() {
		t.Errorf("JetStream in %s: %v, in %s: %v; want only in %s", LogbookAccount, lb.JetStreamEnabled(), ClientsAccount, cl.JetStreamEnabled(), LogbookAccount)
	}
	if !lb.IsExportService("lb.gw.in.>") || lb.IsExportService("lb.in.>") || lb.IsExportService("lb.ev.>") || lb.IsExportService(">") {
		t.Error("LOGBOOK exports something other than the gateway's subjects")
	}
	if sys := s.SystemAccount(); sys == nil || sys.Name != SystemAccount {
		t.Errorf("system account %v", sys)
	}
}

// TestUpgradeMovesStreamsToLogbookAccount: a data directory of a release
// without accounts (streams in $G) keeps its log when the embedded server
// starts with the accounts.
func TestUpgradeMovesStreamsToLogbookAccount(t *testing.T) {
	dir := t.TempDir()
	ns, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := Connect(ClientURL(ns), "old")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := EnsureTopology(ctx, js, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "lb.ev.e._.user_created", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	issuer, _ := nkeys.CreateAccount()
	pub, _ := issuer.PublicKey()
	ns, err = StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, Auth: &EmbeddedAuth{User: "logbook", Password: "pw", Issuer: pub}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, js, err = Connect(ClientURL(ns), "new", nats.UserInfo("logbook", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		t.Fatalf("the events stream is gone after the upgrade: %v", err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("event 1 after the upgrade: %v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream", "$G")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("$G still there: %v", err)
	}
	// Both present: refuse rather than pick one.
	if err := os.MkdirAll(filepath.Join(dir, "jetstream", "$G", "streams"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := MigrateGlobalAccount(dir); err == nil {
		t.Error("migrated over an existing LOGBOOK account")
	}
}
