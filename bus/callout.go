// Logbook's NATS auth callout: the service nats-server asks, for every
// client connection that is not one of Logbook's own components, who the
// client is and what it may do.
//
// A client connects with its API key as the connection token (or as the
// password, any user name). The service resolves the key against the
// policy state and answers with a user JWT, signed by the callout issuer
// key, that allows exactly:
//
//   - publish to <prefix>.in.<username>.> (its own proposals), and
//   - subscribe to _INBOX_<username>.> (replies, such as JetStream's
//     publish acknowledgements; use nats.CustomInboxPrefix).
//
// Everything else (the events and rejections subjects, $JS.API, the read
// service, other users' proposals and inboxes) is refused by the server
// itself. The subject's user token is what the decider takes as the actor,
// so a client cannot propose as anyone else.
//
// The user is placed in ClientsAccount, not in Logbook's account:
// nats-server checks permissions on the subject of a publish but not on its
// reply subject, and JetStream publishes its acknowledgement to the reply
// subject in the account that stored the message. In ClientsAccount the
// proposal reaches Logbook's account through a service import, which
// replaces the reply subject with a private _R_ mapping back into
// ClientsAccount, where nothing stores anything (see AuthConf).
//
// Revocation: the service remembers which connections each key opened and
// disconnects them (Kicker) as soon as the key stops authenticating, so a
// revoked key loses its NATS connections within the watch interval.

package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/policy"
)

// CalloutSubject is where nats-server sends authorization requests.
const CalloutSubject = "$SYS.REQ.USER.AUTH"

// InboxPrefix is the only inbox prefix a user's connection may subscribe
// under.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Permissions returns what a user's NATS connection may do.
func Permissions(subj events.Subjects, user string) jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(subj.ProposalsOf(user))
	p.Sub.Allow.Add(InboxPrefix(user) + ".>")
	return p
}

// Kicker disconnects a client connection.
type Kicker interface {
	Kick(serverID string, clientID uint64) error
}

// ServerKicker kicks clients of an in-process server.
type ServerKicker struct{ S *server.Server }

// Kick implements Kicker.
func (k ServerKicker) Kick(serverID string, clientID uint64) error {
	if serverID != k.S.ID() {
		return fmt.Errorf("client %d is on server %s, not this one", clientID, serverID)
	}
	return k.S.DisconnectClientByID(clientID)
}

// SysKicker kicks clients through the system account's
// $SYS.REQ.SERVER.<id>.KICK request (a connection of a system-account user).
type SysKicker struct{ NC *nats.Conn }

// Kick implements Kicker.
func (k SysKicker) Kick(serverID string, clientID uint64) error {
	req, _ := json.Marshal(map[string]uint64{"cid": clientID})
	_, err := k.NC.Request("$SYS.REQ.SERVER."+serverID+".KICK", req, 2*time.Second)
	return err
}

// Callout is the auth callout service.
type Callout struct {
	// Issuer signs the user JWTs and the responses; its public key is the
	// server's auth_callout issuer.
	Issuer nkeys.KeyPair
	// Account is where users are placed: ClientsAccount unless set.
	// It must be an account without JetStream whose only import is the
	// proposal subjects (see AuthConf): the permissions below bind a
	// user to its own proposal subject, the account keeps every other
	// subject (reply subjects included) away from Logbook's streams.
	Account  string
	Subjects events.Subjects
	// Authenticate resolves an API key's hash (policy.HashKey) to a
	// username; ok is false for an unknown or revoked key. An error means
	// "cannot tell now" (starting). The raw key is never kept.
	Authenticate func(keyHash string) (user string, ok bool, err error)
	// Kicker, when set, disconnects connections whose key was revoked.
	Kicker Kicker
	// TTL bounds a connection's authorization (default 1h): the client
	// reconnects, and the key is checked again.
	TTL time.Duration
	// Allow, when set, rate-limits each user's proposals (Gateway.Allow).
	Allow func(user string) (ok bool, retryAfter time.Duration)
	Log   *slog.Logger

	mu       sync.Mutex
	sessions map[session]sessionInfo
}

type session struct {
	server string
	client uint64
}

type sessionInfo struct {
	keyHash string
	expires time.Time
}

// GenerateIssuer returns a new callout issuer (an account key pair).
func GenerateIssuer() (nkeys.KeyPair, error) { return nkeys.CreateAccount() }

// IssuerFromSeed parses an issuer seed ("SA...").
func IssuerFromSeed(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("callout issuer seed: %w", err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("callout issuer seed must be an account seed (SA...)")
	}
	return kp, nil
}

// NewPassword returns a random password for Logbook's own NATS users.
func NewPassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Serve answers authorization requests on nc (a connection of one of the
// server's auth_users) until ctx ends, and watches sessions for revoked
// keys. Several services may run at once (a queue group).
func (c *Callout) Serve(ctx context.Context, nc *nats.Conn) error {
	if c.Account == "" {
		c.Account = ClientsAccount
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.mu.Lock()
	c.sessions = map[session]sessionInfo{}
	c.mu.Unlock()
	// The clients this service admits send their proposals through the
	// gateway (see Gateway and AuthConf).
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	gw := &Gateway{NC: nc, JS: js, Subjects: c.Subjects, Allow: c.Allow, Log: c.Log.With("component", "nats-gateway")}
	gwDone := make(chan error, 1)
	gctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-gwDone }()
	go func() { gwDone <- gw.Serve(gctx) }()
	sub, err := nc.QueueSubscribe(CalloutSubject, "logbook-auth", func(m *nats.Msg) {
		if err := m.Respond(c.answer(m.Data)); err != nil {
			c.Log.Warn("answer auth callout", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", CalloutSubject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe %s: %w", CalloutSubject, err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-gwDone:
			gwDone <- err // for the deferred wait
			if err == nil || ctx.Err() != nil {
				return nil // stopping
			}
			return fmt.Errorf("client gateway: %w", err)
		case <-tick.C:
			c.sweep()
		}
	}
}

// answer decides one authorization request and returns the signed response.
func (c *Callout) answer(data []byte) []byte {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		c.Log.Warn("undecodable auth callout request", "err", err)
		return nil // nats-server treats no answer as a refusal
	}
	respond := func(userJWT, errMsg string) []byte {
		rc := jwt.NewAuthorizationResponseClaims(req.UserNkey)
		rc.Audience = req.Server.ID
		rc.Jwt, rc.Error = userJWT, errMsg
		tok, err := rc.Encode(c.Issuer)
		if err != nil {
			c.Log.Error("sign auth callout response", "err", err)
			return nil
		}
		return []byte(tok)
	}
	key := req.ConnectOptions.Token
	if key == "" {
		key = req.ConnectOptions.Password
	}
	if key == "" {
		return respond("", "connect with your Logbook API key as the token")
	}
	hash := policy.HashKey(key)
	user, ok, err := c.Authenticate(hash)
	if err != nil {
		return respond("", "Logbook cannot check keys right now; retry")
	}
	if !ok {
		return respond("", "invalid or revoked API key")
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = user
	uc.Audience = c.Account
	uc.Expires = time.Now().Add(c.TTL).Unix()
	uc.Permissions = Permissions(c.Subjects, user)
	tok, err := uc.Encode(c.Issuer)
	if err != nil {
		c.Log.Error("sign user jwt", "err", err)
		return respond("", "internal error")
	}
	c.mu.Lock()
	c.sessions[session{req.Server.ID, req.ClientInformation.ID}] = sessionInfo{keyHash: hash, expires: time.Now().Add(c.TTL)}
	c.mu.Unlock()
	c.Log.Debug("authorized NATS client", "user", user, "client", req.ClientInformation.ID)
	return respond(tok, "")
}

// sweep disconnects the connections of keys that no longer authenticate and
// forgets expired sessions.
func (c *Callout) sweep() {
	now := time.Now()
	c.mu.Lock()
	var revoked []session
	for s, info := range c.sessions {
		if now.After(info.expires) {
			delete(c.sessions, s)
			continue
		}
		if _, ok, err := c.Authenticate(info.keyHash); err == nil && !ok {
			revoked = append(revoked, s)
			delete(c.sessions, s)
		}
	}
	c.mu.Unlock()
	for _, s := range revoked {
		if c.Kicker == nil {
			continue
		}
		if err := c.Kicker.Kick(s.server, s.client); err != nil {
			c.Log.Debug("disconnect client of a revoked key", "client", s.client, "err", err)
		} else {
			c.Log.Info("disconnected the NATS client of a revoked key", "client", s.client)
		}
	}
}
