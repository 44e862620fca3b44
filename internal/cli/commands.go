package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/logbook/logbook/bus"
)

// Footer is the environment the API commands read.
const Footer = `Commands that talk to a running Logbook read LOGBOOK_URL (default
http://127.0.0.1:8080) and LOGBOOK_API_KEY (your API key).`

// AdminCommands are the commands that administer and read a running
// Logbook over its HTTP API, and the offline ones that need no server
// (nats-secrets, digest -dir).
func AdminCommands() []*Command {
	return []*Command{
		{Name: "whoami", Summary: "the user of LOGBOOK_API_KEY", Output: true, Flags: whoami},
		{Name: "user create", Args: "<username>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: userCreate,
			Summary: "create a user (site admin)"},
		{Name: "key create", Args: "<username>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: keyCreate,
			Summary: "make an API key for a user; printed once (-q: just the key)"},
		{Name: "key list", Args: "<username>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: keyList,
			Summary: "a user's API keys (id, name, created; never the key)"},
		{Name: "key revoke", Args: "<username> <key-id>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: keyRevoke,
			Summary: "revoke an API key"},
		{Name: "team create", Args: "<team>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: teamCreate,
			Summary: "create a team (site admin)"},
		{Name: "team add", Args: "<team> <username>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: teamAdd,
			Summary: "add a user to a team (site admin, team admin)"},
		{Name: "service-account create", Args: "<team> <name>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: serviceAccountCreate,
			Summary: "create a team's service account and its first key (-q: just the key)"},
		{Name: "log quarantine", Output: true, Flags: logQuarantine,
			Summary: "skip the unreadable event at stream sequence -seq of the log for good, on every replica (site admin; -reason is shown in the audit)"},
		{Name: "projects", Summary: "the projects you can see, with your role", Output: true, Flags: projects},
		{Name: "project create", Args: "<entity>/<project>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: projectCreate,
			Summary: "create a project (you become its Admin)"},
		{Name: "members", Args: "<entity>/<project>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: members,
			Summary: "a project's members and pending invites"},
		{Name: "invite", Args: "<entity>/<project> <username-or-email>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: invite,
			Summary: "invite a user (or an email, pending until the user exists) to a project"},
		{Name: "project invite", Args: "<entity>/<project> <username-or-email>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: invite,
			Summary: "the same as invite"},
		{Name: "role", Args: "<entity>/<project> <username> <admin|member|viewer>", MinArgs: 3, MaxArgs: 3, Output: true, Flags: role,
			Summary: "change a member's role"},
		{Name: "remove", Args: "<entity>/<project> <username-or-email>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: remove,
			Summary: "remove a member (yourself: leave), or revoke a pending invite (an email)"},
		{Name: "runs", Args: "<entity>/<project> [comparison]...", MinArgs: 1, MaxArgs: -1,
			Output: true, Flags: runs, Summary: "search a project's runs: filters, sort, paging",
			Help: runsHelp},
		{Name: "run", Args: "<entity>/<project> <run-id>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: runShow,
			Summary: "one run: state, owner, config, summary"},
		{Name: "history", Args: "<entity>/<project> <run-id>", MinArgs: 2, MaxArgs: 2, Output: true, Flags: history,
			Summary: "a run's history rows, or one metric's points"},
		{Name: "export", Args: "<entity>/<project> <run-id>", MinArgs: 2, MaxArgs: 2, Flags: export,
			Summary: "a run's whole history as CSV or NDJSON, streamed"},
		{Name: "audit", Args: "<entity>/<project>", MinArgs: 1, MaxArgs: 1, Output: true, Flags: audit,
			Summary: "a project's audit trail, newest first (Admin)"},
		{Name: "nats-secrets", Flags: natsSecretsCmd,
			Summary: "print new NATS credentials for deploy/auth.conf (shell exports)"},
	}
}

// Run runs one of AdminCommands, writing to out (used by tests that drive
// the CLI in process).
func Run(ctx context.Context, args []string, out io.Writer) error {
	p := &Program{Name: "logbook", Footer: Footer, Commands: AdminCommands()}
	return p.Main(ctx, args, out, out)
}

const runsHelp = `Filters (all ANDed) are the API's (GET .../runs): -state running,crashed,
-job-type, -group, -owner, -tag (repeatable: all of them), -tags-any a,b, and
comparisons on config values and summary metrics (config.<path><op><value>,
summary.<metric><op><value>), as arguments or -filter:
  logbook runs acme/seg 'config.optimizer.lr>=0.001' 'summary.val/loss<0.3'
Operators: = != < <= > >=. -sort [-]created_at|updated_at|name|summary.<metric>.
A page holds -limit runs (default 50); the next page's cursor is printed on
stderr (-cursor), or -all fetches every page.`

// project splits "<entity>/<project>".
func project(ep string) (string, error) {
	e, p, ok := strings.Cut(ep, "/")
	if !ok || e == "" || p == "" || strings.Contains(p, "/") {
		return "", UsageError{fmt.Sprintf("%q: write the project as <entity>/<project>", ep)}
	}
	return "/api/v1/projects/" + url.PathEscape(e) + "/" + url.PathEscape(p), nil
}

// send is an action that sends one request and shows its answer.
func send(ctx context.Context, e *Env, method, path string, body any, v view) error {
	a, err := newAPI()
	if err != nil {
		return err
	}
	resp, err := a.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	return show(e, resp.body, v)
}

var (
	userView    = view{columns: []column{field("username", "username"), field("email", "email"), field("display name", "display_name")}, quiet: "username"}
	keyView     = view{columns: []column{field("key id", "key_id"), field("name", "name"), field("key (shown once)", "key")}, quiet: "key"}
	projectView = view{columns: []column{field("entity", "entity"), field("name", "name"), field("role", "role"),
		field("runs", "run_count"), field("created by", "created_by"), when("created", "created_at")}, quiet: "name"}
	memberView = view{columns: []column{field("username", "username"), field("email", "email"), field("role", "role"), field("pending", "pending")}, quiet: "username"}
)

func whoami(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, _ []string) error {
		return send(ctx, e, "GET", "/api/v1/whoami", nil, view{columns: []column{field("username", "username"), field("email", "email"),
			field("site admin", "site_admin")}, quiet: "username"})
	}
}

func userCreate(fs *flag.FlagSet) Action {
	email := fs.String("email", "", "the user's email address (pending invites to it become memberships)")
	name := fs.String("name", "", "display name")
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "POST", "/api/v1/users", map[string]string{"username": args[0], "email": *email, "display_name": *name}, userView)
	}
}

func keyCreate(fs *flag.FlagSet) Action {
	name := fs.String("name", "", "a name for the key (laptop, ci)")
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "POST", "/api/v1/users/"+url.PathEscape(args[0])+"/keys", map[string]string{"name": *name}, keyView)
	}
}

func keyList(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "GET", "/api/v1/users/"+url.PathEscape(args[0])+"/keys", nil,
			view{columns: []column{field("id", "id"), field("name", "name"), when("created", "created")}, quiet: "id"})
	}
}

func keyRevoke(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "DELETE", "/api/v1/users/"+url.PathEscape(args[0])+"/keys/"+url.PathEscape(args[1]), nil,
			view{columns: []column{field("revoked", "revoked")}, quiet: "revoked"})
	}
}

func teamCreate(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "POST", "/api/v1/teams", map[string]string{"name": args[0]}, view{columns: []column{field("team", "name")}, quiet: "name"})
	}
}

func logQuarantine(fs *flag.FlagSet) Action {
	seq := fs.Uint64("seq", 0, "the stream sequence of the unreadable event (named by the error that stopped the server)")
	reason := fs.String("reason", "", "why it is skipped (required; the audit shows it)")
	return func(ctx context.Context, e *Env, _ []string) error {
		if *seq == 0 || strings.TrimSpace(*reason) == "" {
			return UsageError{"give -seq N and -reason \"...\""}
		}
		return send(ctx, e, "POST", "/api/v1/log/quarantine", map[string]any{"seq": *seq, "reason": *reason},
			view{columns: []column{field("quarantined seq", "seq"), field("reason", "reason"), field("decision seq", "decision_seq")}, quiet: "seq"})
	}
}

func teamAdd(fs *flag.FlagSet) Action {
	role := fs.String("role", "member", "team role: admin (Admin on every project of the team) or member")
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "POST", "/api/v1/teams/"+url.PathEscape(args[0])+"/members", map[string]string{"username": args[1], "role": *role},
			view{columns: []column{field("username", "username"), field("team role", "role")}, quiet: "username"})
	}
}

func serviceAccountCreate(fs *flag.FlagSet) Action {
	name := fs.String("name", "", "a name for its first key")
	return func(ctx context.Context, e *Env, args []string) error {
		return send(ctx, e, "POST", "/api/v1/teams/"+url.PathEscape(args[0])+"/service-accounts", map[string]string{"username": args[1], "key_name": *name},
			view{columns: []column{field("username", "username"), field("owner", "owner"), field("key id", "key_id"), field("key (shown once)", "key")}, quiet: "key"})
	}
}

func projects(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, _ []string) error {
		return send(ctx, e, "GET", "/api/v1/projects", nil, projectView)
	}
}

func projectCreate(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		ent, p, _ := strings.Cut(args[0], "/")
		if _, err := project(args[0]); err != nil {
			return err
		}
		return send(ctx, e, "POST", "/api/v1/projects", map[string]string{"entity": ent, "name": p},
			view{columns: []column{field("entity", "entity"), field("name", "name")}, quiet: "name"})
	}
}

func members(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		return send(ctx, e, "GET", p+"/members", nil, memberView)
	}
}

func invite(fs *flag.FlagSet) Action {
	role := fs.String("role", "member", "role: admin, member or viewer")
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		body := map[string]string{"role": *role, "username": args[1]}
		if strings.Contains(args[1], "@") {
			body = map[string]string{"role": *role, "email": args[1]}
		}
		return send(ctx, e, "POST", p+"/members", body, view{quiet: "seq"})
	}
}

func role(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		return send(ctx, e, "PATCH", p+"/members/"+url.PathEscape(args[1]), map[string]string{"role": args[2]}, view{quiet: "seq"})
	}
}

func remove(fs *flag.FlagSet) Action {
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		if strings.Contains(args[1], "@") {
			return send(ctx, e, "DELETE", p+"/invites/"+url.PathEscape(args[1]), nil, view{quiet: "seq"})
		}
		return send(ctx, e, "DELETE", p+"/members/"+url.PathEscape(args[1]), nil, view{quiet: "seq"})
	}
}

func audit(fs *flag.FlagSet) Action {
	limit := fs.Int("limit", 0, "number of entries (the server's default: 100)")
	before := fs.String("before", "", "entries before this time (RFC 3339), for the next page")
	return func(ctx context.Context, e *Env, args []string) error {
		p, err := project(args[0])
		if err != nil {
			return err
		}
		q := url.Values{}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		if *before != "" {
			q.Set("before", *before)
		}
		return send(ctx, e, "GET", p+"/audit?"+q.Encode(), nil, view{columns: []column{
			column{"TIME", func(m map[string]any) string { return text(m["time"]) }}, field("actor", "actor"), field("type", "type"),
			field("run", "run"), field("accepted", "accepted"), field("code", "code"), field("reason", "reason")}, quiet: "seq"})
	}
}

func natsSecretsCmd(fs *flag.FlagSet) Action {
	return func(_ context.Context, e *Env, _ []string) error { return natsSecrets(e.Out) }
}

// natsSecrets prints fresh credentials for deploy/auth.conf as shell
// exports: Logbook's NATS password and the auth callout's issuer.
func natsSecrets(out io.Writer) error {
	issuer, err := bus.GenerateIssuer()
	if err != nil {
		return err
	}
	seed, err := issuer.Seed()
	if err != nil {
		return err
	}
	pub, err := issuer.PublicKey()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "export LOGBOOK_NATS_PASSWORD=%s\nexport LOGBOOK_NATS_ISSUER_SEED=%s\nexport LOGBOOK_NATS_ISSUER=%s\n",
		bus.NewPassword(), seed, pub)
	return err
}

// stdoutIsTerminal reports whether w is a terminal (progress is drawn in
// place there, logged line by line elsewhere).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
