package main

import (
	"context"
	"io"
	"time"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/internal/cli"
)

func admin(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("projector "+cmd, stderr)
	natsURL := fs.String("nats.url", "nats://127.0.0.1:4222", "NATS server URL(s) of the running projectors")
	id := fs.String("id", "", "only the projector with this id (as logged at start); all by default")
	dir := fs.String("dir", "", "digest: the read model in this directory (no process may have it open) instead of the running ones")
	verify := fs.Bool("verify", false, "digest: also replay the log up to each read model's sequence and compare")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the first projector's answer (verify waits for the replay, at least 10m)")
	natsAuth := app.NATSAuthFlags(fs, false) // the components' user: admin requests are no client proposals
	if err := cli.Parse(fs, args, "LOGBOOK_"); err != nil {
		return err
	}
	opts := natsAuth.Options()
	prefix := bus.DefaultConfig().Subjects.Prefix
	switch {
	case cmd == "rebuild":
		return cli.RebuildNATS(ctx, *natsURL, prefix, *id, stdout, stderr, opts...)
	case cmd == "status":
		return cli.AdminNATS(ctx, *natsURL, prefix, "status", *id, *wait, stdout, opts...)
	case *dir != "":
		return cli.DigestDir(*dir, stdout)
	case *verify:
		return cli.AdminNATS(ctx, *natsURL, prefix, "verify", *id, max(*wait, 10*time.Minute), stdout, opts...)
	}
	return cli.AdminNATS(ctx, *natsURL, prefix, "digest", *id, *wait, stdout, opts...)
}
