package bus

import "github.com/nats-io/nats-server/v2/server"

// EmbeddedAuth turns on authentication in the embedded server, as
// deploy/nats.conf does for an external one: Logbook's own components
// connect as User with Password and have full rights; every other
// connection goes through the auth callout, whose responses must be signed
// by Issuer (an account public key; see package natsauth), and gets only
// the permissions the callout grants.
type EmbeddedAuth struct {
	User     string
	Password string
	Issuer   string
}

func (a *EmbeddedAuth) configure(opts *server.Options) {
	if a == nil {
		return
	}
	opts.Users = []*server.User{{Username: a.User, Password: a.Password}}
	opts.AuthCallout = &server.AuthCallout{Issuer: a.Issuer, AuthUsers: []string{a.User}}
}
