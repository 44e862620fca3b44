package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/policy"
)

// NATSAuth is how Logbook's components authenticate to NATS (see
// deploy/nats.conf): as User with Password, a user the server exempts from
// the auth callout and gives full rights. Ingest also serves the auth
// callout for every other connection (IssuerSeed) and disconnects the
// connections of revoked keys through the system account (SysUser, same
// password).
type NATSAuth struct {
	User       string
	Password   string
	IssuerSeed string
	SysUser    string
}

// NATSAuthFlags registers -nats.user and -nats.password (and, for ingest,
// -nats.issuer.seed and -nats.sys.user) on fs.
func NATSAuthFlags(fs *flag.FlagSet, ingest bool) *NATSAuth {
	a := &NATSAuth{}
	fs.StringVar(&a.User, "nats.user", "logbook", "NATS user of Logbook's components (exempt from the auth callout)")
	fs.StringVar(&a.Password, "nats.password", "", "its password (LOGBOOK_NATS_PASSWORD; empty: connect without credentials)")
	if ingest {
		fs.StringVar(&a.IssuerSeed, "nats.issuer.seed", "", "account seed (SA...) that signs the auth callout's answers (LOGBOOK_NATS_ISSUER_SEED; the server's auth_callout issuer is its public key); empty: serve no callout")
		fs.StringVar(&a.SysUser, "nats.sys.user", "logbook-sys", "system-account NATS user (same password) that disconnects the clients of revoked keys")
	}
	return a
}

// Options are the connection options of Logbook's own user.
func (a *NATSAuth) Options() []nats.Option {
	if a == nil || a.Password == "" {
		return nil
	}
	return []nats.Option{nats.UserInfo(a.User, a.Password)}
}

// Callout returns the auth callout service bound to the ingest side's
// policy state: a key authenticates while it is active in the state.
func (in *Ingest) Callout(issuer nkeys.KeyPair, kicker bus.Kicker) *bus.Callout {
	return &bus.Callout{
		Issuer:   issuer,
		Subjects: in.Bus.Subject,
		Kicker:   kicker,
		Log:      in.Bus.Log.With("component", "nats-auth"),
		// Clients publishing over NATS share the per-key limit's rate,
		// one budget per user (the gateway knows the user, not the key).
		Allow: func(user string) (bool, time.Duration) {
			return in.Writes.Limits.Allow("nats-user:"+user, time.Now())
		},
		Authenticate: func(hash string) (string, bool, error) {
			select {
			case <-in.Service.Ready():
			default:
				return "", false, errors.New("starting")
			}
			var user string
			in.Service.Decider.View(func(s *policy.State) {
				if u, ok := s.UserByKeyHash(hash); ok {
					user = u.Username
				}
			})
			return user, user != "", nil
		},
	}
}

// ServeCallout serves the auth callout of an external server until ctx
// ends, if a.IssuerSeed is set.
func (in *Ingest) ServeCallout(ctx context.Context, a *NATSAuth, url string) error {
	if a == nil || a.IssuerSeed == "" {
		<-ctx.Done()
		return nil
	}
	issuer, err := bus.IssuerFromSeed(a.IssuerSeed)
	if err != nil {
		return err
	}
	var kicker bus.Kicker
	if a.SysUser != "" {
		sys, err := nats.Connect(url, nats.Name("logbook-ingest-sys"), nats.UserInfo(a.SysUser, a.Password), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect as the system-account user %q (disconnects revoked keys): %w", a.SysUser, err)
		}
		defer sys.Close()
		kicker = bus.SysKicker{NC: sys}
	}
	return in.Callout(issuer, kicker).Serve(ctx, in.Bus.NC)
}

// embeddedAuth generates the embedded server's credentials for this run:
// Logbook's password and the callout issuer, never stored.
func embeddedAuth() (*bus.EmbeddedAuth, nkeys.KeyPair, error) {
	issuer, err := bus.GenerateIssuer()
	if err != nil {
		return nil, nil, err
	}
	pub, err := issuer.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	return &bus.EmbeddedAuth{User: "logbook", Password: bus.NewPassword(), Issuer: pub}, issuer, nil
}
