package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/internal/cli"
)

func resetKeyFlags(fs *flag.FlagSet) cli.Action {
	dataDir := fs.String("data.dir", "./logbook-data", "data directory of the stopped Logbook")
	user := fs.String("user", "admin", "the site admin whose key to replace")
	name := fs.String("name", "reset", "name of the new key")
	revoke := fs.Bool("revoke-others", false, "also revoke every other key of the user")
	return func(ctx context.Context, e *cli.Env, _ []string) error {
		res, err := app.ResetAdminKey(ctx, app.ResetKeyConfig{DataDir: *dataDir, Username: *user, KeyName: *name,
			RevokeOthers: *revoke, Key: os.Getenv("LOGBOOK_ADMIN_API_KEY")})
		if err != nil {
			return err
		}
		if e.Quiet {
			_, err = fmt.Fprintln(e.Out, res.Key)
			return err
		}
		if e.Format == "json" {
			_, err = fmt.Fprintf(e.Out, "{\"username\": %q, \"key_id\": %q, \"key\": %q, \"revoked\": %d, \"seq\": %d}\n", res.Username, res.KeyID, res.Key, res.Revoked, res.Seq)
			return err
		}
		_, err = fmt.Fprintf(e.Out, "New API key of %q (id %s, shown once, only its hash is stored; %d other key(s) revoked):\n  %s\n",
			res.Username, res.KeyID, res.Revoked, res.Key)
		return err
	}
}
