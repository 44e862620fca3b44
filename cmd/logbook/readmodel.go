package main

import (
	"context"
	"io"
	"os"

	"github.com/logbook/logbook/internal/cli"
)

// readModel runs "logbook digest" and "logbook rebuild" against a running
// Logbook (LOGBOOK_URL, a site admin's LOGBOOK_API_KEY), or "digest -dir" on
// a read-model directory no process has open.
func readModel(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("logbook "+cmd, stderr)
	dir := fs.String("dir", "", "digest: the read model in this directory (e.g. ./logbook-data/readmodel of a stopped Logbook)")
	verify := fs.Bool("verify", false, "digest: also replay the log up to the read model's sequence and compare the digests")
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	if cmd == "digest" && *dir != "" {
		return cli.DigestDir(*dir, stdout)
	}
	base := os.Getenv("LOGBOOK_URL")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	key := os.Getenv("LOGBOOK_API_KEY")
	if key == "" {
		return cli.UsageError{Msg: "set LOGBOOK_API_KEY to a site admin's API key"}
	}
	if cmd == "rebuild" {
		return cli.RebuildHTTP(ctx, base, key, stdout, stderr)
	}
	return cli.DigestHTTP(ctx, base, key, *verify, stdout)
}
