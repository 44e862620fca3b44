package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS accounts. Logbook's streams, KV buckets and object stores, and its
// components, live in LogbookAccount; every connection made with an API key
// lives in ClientsAccount, which has no JetStream and whose only way into
// LogbookAccount is a service import of the proposal subjects. A reply
// subject set by a client crosses that import as a private _R_ mapping, so
// the answer goes back into ClientsAccount; on the Logbook side the import
// lands on subjects no stream captures, served by the Gateway. No subject
// a client names (as subject, reply subject or trace destination) is ever
// published to in LogbookAccount. SystemAccount is nats-server's
// system account (disconnecting the clients of revoked keys).
const (
	LogbookAccount = "LOGBOOK"
	ClientsAccount = "CLIENTS"
	SystemAccount  = "SYS"
)

// AuthConf is nats-server's account and authorization configuration for
// Logbook. deploy/auth.conf is this text (a test keeps them equal) and the
// embedded server runs it too, so the all-in-one and an external server or
// cluster enforce the same isolation. The secrets are variables:
// LOGBOOK_NATS_PASSWORD (Logbook's components) and LOGBOOK_NATS_ISSUER
// (the public key of the auth callout's issuer; see Callout).
//
// The subjects lb.in.> and lb.gw.in.> are events.DefaultPrefix's; a test
// checks them.
const AuthConf = `# Logbook's NATS accounts and authorization, included by nats.conf and
# cluster/n*.conf. The embedded server of "logbook" runs the same text
# (bus.AuthConf; a test keeps them equal).
#
# LOGBOOK: every stream, KV bucket and object store (JetStream is enabled in
#   this account only) and Logbook's own components, user "logbook": full
#   rights in this account, exempt from the auth callout.
# CLIENTS: every connection made with an API key. The auth callout served
#   by ingest places it here with permission to publish its own proposals
#   (lb.in.<username>.>) and to subscribe to its own inbox
#   (_INBOX_<username>.>), nothing else. CLIENTS has no JetStream; its only
#   way into LOGBOOK is the service import below, which maps lb.in.> to
#   lb.gw.in.> in LOGBOOK: no stream captures those subjects; ingest's
#   client gateway checks each proposal and stores it in the inbox with no
#   header but a Nats-Msg-Id scoped to the user, and answers with
#   JetStream's acknowledgement. A reply subject crosses a service import
#   as a private _R_ reply mapping back into CLIENTS, whatever subject the
#   client named: nothing a client sends is published to a LOGBOOK subject
#   of its choosing (streams, KV, object stores, $JS.API, lb.decided.*,
#   lb.read, another user's proposals). "share" makes the server tell the
#   gateway the sender's account and user name.
# SYS: the system account; "logbook-sys" (same password) is the user ingest
#   disconnects the clients of revoked API keys with.
#
# The secrets come from the environment (generate them with
# "logbook nats-secrets"): LOGBOOK_NATS_PASSWORD and LOGBOOK_NATS_ISSUER
# (the public key of ingest's LOGBOOK_NATS_ISSUER_SEED).
#
# Upgrading from a release that kept the streams in the global account ($G):
# see "Upgrading the NATS accounts" in the README.
accounts {
  LOGBOOK: {
    jetstream: enabled
    users: [ { user: logbook, password: $LOGBOOK_NATS_PASSWORD } ]
    exports: [ { service: "lb.gw.in.>", accounts: [ CLIENTS ] } ]
  }
  CLIENTS: {
    imports: [ { service: { account: LOGBOOK, subject: "lb.gw.in.>" }, to: "lb.in.>", share: true } ]
  }
  SYS: {
    users: [ { user: logbook-sys, password: $LOGBOOK_NATS_PASSWORD } ]
  }
}
system_account: SYS

authorization {
  auth_callout {
    # Only answers signed by ingest's issuer key are trusted.
    issuer: $LOGBOOK_NATS_ISSUER
    # The callout requests travel in LOGBOOK, where ingest answers them.
    account: LOGBOOK
    auth_users: [ logbook, logbook-sys ]
  }
}
`

// EmbeddedAuth turns on authentication in the embedded server with
// AuthConf, as deploy/nats.conf does for an external one: Logbook's own
// components connect as User ("logbook") with Password in LogbookAccount;
// every other connection goes through the auth callout, whose responses
// must be signed by Issuer (an account public key; see Callout),
// and lands in ClientsAccount with only the permissions the callout grants.
type EmbeddedAuth struct {
	User     string
	Password string
	Issuer   string
}

func (a *EmbeddedAuth) configure(opts *server.Options) error {
	if a == nil {
		return nil
	}
	if a.User != "logbook" {
		return fmt.Errorf("embedded auth: the components' user is %q in AuthConf, not %q", "logbook", a.User)
	}
	conf := "LOGBOOK_NATS_PASSWORD: " + strconv.Quote(a.Password) + "\n" +
		"LOGBOOK_NATS_ISSUER: " + strconv.Quote(a.Issuer) + "\n" + AuthConf
	if err := opts.ProcessConfigString(conf); err != nil {
		return fmt.Errorf("embedded auth configuration: %w", err)
	}
	return nil
}

// MigrateGlobalAccount moves the JetStream data of a single server from the
// global account ($G, where releases before the account isolation kept
// Logbook's streams) to LogbookAccount, before the server starts. storeDir
// is the server's store_dir (JetStream keeps an account's streams under
// <store_dir>/jetstream/<account>). It does nothing when there is nothing
// to move, and refuses when both exist (someone must decide). A clustered
// server keeps its stream assignments in the meta group as well; see the
// README for that case.
func MigrateGlobalAccount(storeDir string) (moved bool, err error) {
	from := filepath.Join(storeDir, "jetstream", "$G")
	to := filepath.Join(storeDir, "jetstream", LogbookAccount)
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return false, err
	}
	if len(entries) == 0 {
		return false, os.Remove(from)
	}
	if _, err := os.Stat(to); err == nil {
		return false, fmt.Errorf("both %s and %s exist: Logbook's streams are in %s since the account isolation; move or remove %s by hand", from, to, LogbookAccount, from)
	}
	if err := os.Rename(from, to); err != nil {
		return false, fmt.Errorf("move JetStream data to account %s: %w", LogbookAccount, err)
	}
	return true, nil
}
