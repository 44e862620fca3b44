// Package cli holds what Logbook's commands share: flags with one
// environment-variable prefix, the logger, and the admin subcommands that
// talk to a running Logbook over HTTP.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/logbook/logbook/natsauth"
)

// UsageError is a mistake on the command line.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// NewFlagSet returns a flag set that reports errors instead of exiting.
func NewFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// Parse parses args; every flag not given on the command line is taken from
// the environment variable prefix + its name upper-cased with '.' as '_'
// (-data.dir <- LOGBOOK_DATA_DIR).
func Parse(fs *flag.FlagSet, args []string, prefix string) error {
	if err := fs.Parse(args); err != nil {
		return UsageError{err.Error()}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := prefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(f.Name))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = UsageError{fmt.Sprintf("%s=%q: %v", env, v, e)}
			}
		}
	})
	return err
}

// Logger returns a text logger at level.
func Logger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, UsageError{fmt.Sprintf("-log.level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

const usage = `usage:
  logbook [serve] [-data.dir DIR] [-http.addr ADDR] [-nats.addr ADDR] [-durable]
  logbook user create <username> [-email EMAIL] [-name NAME]
  logbook key create <username> [-name NAME]
  logbook team create <team>
  logbook team add <team> <username> [-role admin|member]
  logbook project create <entity>/<project>
  logbook project invite <entity>/<project> <username-or-email> [-role admin|member|viewer]
  logbook runs <entity>/<project>
  logbook key list <username>
  logbook key revoke <username> <key-id>
  logbook service-account create <team> <name> [-name KEY_NAME]
  logbook audit <entity>/<project> [-limit N] [-before TIME]
  logbook nats-secrets        (prints new NATS credentials for deploy/auth.conf)
admin commands use LOGBOOK_URL (default http://127.0.0.1:8080) and LOGBOOK_API_KEY`

// Run runs an admin subcommand against a running Logbook.
func Run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return UsageError{usage}
	}
	cmd := args[0]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") && (cmd == "user" || cmd == "key" || cmd == "team" || cmd == "project" || cmd == "service-account") {
		cmd += " " + args[1]
		args = args[1:]
	}
	fs := NewFlagSet("logbook "+cmd, out)
	email := fs.String("email", "", "email address")
	name := fs.String("name", "", "display name (users) or key name (keys)")
	role := fs.String("role", "", "role")
	limit := fs.Int("limit", 0, "number of audit entries (default 100)")
	before := fs.String("before", "", "audit entries before this time (RFC 3339)")
	// Flags may follow positional arguments.
	var pos []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return UsageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	need := func(n int) error {
		if len(pos) != n {
			return UsageError{fmt.Sprintf("logbook %s takes %d argument(s)\n%s", cmd, n, usage)}
		}
		return nil
	}
	split := func(ep string) (string, string, error) {
		e, p, ok := strings.Cut(ep, "/")
		if !ok {
			return "", "", UsageError{fmt.Sprintf("%q: write the project as <entity>/<project>", ep)}
		}
		return e, p, nil
	}
	var method, path string
	var body any
	switch cmd {
	case "user create":
		if err := need(1); err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/users", map[string]string{"username": pos[0], "email": *email, "display_name": *name}
	case "key create":
		if err := need(1); err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/users/"+pos[0]+"/keys", map[string]string{"name": *name}
	case "team create":
		if err := need(1); err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/teams", map[string]string{"name": pos[0]}
	case "team add":
		if err := need(2); err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/teams/"+pos[0]+"/members", map[string]string{"username": pos[1], "role": *role}
	case "project create":
		if err := need(1); err != nil {
			return err
		}
		e, p, err := split(pos[0])
		if err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/projects", map[string]string{"entity": e, "name": p}
	case "project invite":
		if err := need(2); err != nil {
			return err
		}
		e, p, err := split(pos[0])
		if err != nil {
			return err
		}
		inv := map[string]string{"role": *role}
		if strings.Contains(pos[1], "@") {
			inv["email"] = pos[1]
		} else {
			inv["username"] = pos[1]
		}
		method, path, body = "POST", "/api/v1/projects/"+e+"/"+p+"/members", inv
	case "key list":
		if err := need(1); err != nil {
			return err
		}
		method, path = "GET", "/api/v1/users/"+pos[0]+"/keys"
	case "key revoke":
		if err := need(2); err != nil {
			return err
		}
		method, path = "DELETE", "/api/v1/users/"+pos[0]+"/keys/"+pos[1]
	case "service-account create":
		if err := need(2); err != nil {
			return err
		}
		method, path, body = "POST", "/api/v1/teams/"+pos[0]+"/service-accounts", map[string]string{"username": pos[1], "key_name": *name}
	case "audit":
		if err := need(1); err != nil {
			return err
		}
		e, p, err := split(pos[0])
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
		method, path = "GET", "/api/v1/projects/"+e+"/"+p+"/audit"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	case "nats-secrets":
		return natsSecrets(out)
	case "runs":
		if err := need(1); err != nil {
			return err
		}
		e, p, err := split(pos[0])
		if err != nil {
			return err
		}
		method, path = "GET", "/api/v1/projects/"+e+"/"+p+"/runs"
	default:
		return UsageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
	}
	return call(ctx, method, path, body, out)
}

func call(ctx context.Context, method, path string, body any, out io.Writer) error {
	base := os.Getenv("LOGBOOK_URL")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	key := os.Getenv("LOGBOOK_API_KEY")
	if key == "" {
		return UsageError{"set LOGBOOK_API_KEY to your API key"}
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is Logbook running at %s?)", method, path, err, base)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") == nil {
		b = pretty.Bytes()
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	_, err = fmt.Fprintf(out, "%s\n", bytes.TrimSpace(b))
	return err
}

// natsSecrets prints fresh credentials for deploy/auth.conf as shell
// exports: Logbook's NATS password and the auth callout's issuer.
func natsSecrets(out io.Writer) error {
	issuer, err := natsauth.GenerateIssuer()
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
		natsauth.NewPassword(), seed, pub)
	return err
}
