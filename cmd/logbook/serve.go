package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	lbhttp "github.com/logbook/logbook/http"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/internal/cli"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/wandb"
)

func serveFlags(fs *flag.FlagSet) cli.Action {
	dataDir := fs.String("data.dir", "./logbook-data", "directory for all data (NATS streams and the read model)")
	httpAddr := fs.String("http.addr", "127.0.0.1:8080", "HTTP address of the API, the W&B endpoints, the web UI and /metrics")
	natsAddr := fs.String("nats.addr", "127.0.0.1:4222", "client address of the embedded NATS server (port 0 picks a free one)")
	durable := fs.Bool("durable", false, "fsync every JetStream write and every read-model batch (survives power loss; slower)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn or error")
	crashAfter := fs.Duration("runs.crash-after", policy.DefaultCrashAfter, "mark a running run crashed after this long without a heartbeat or a log")
	keyRate := fs.Float64("http.key-rate", lbhttp.DefaultKeyRate, "requests per second allowed per API key, on average (429 rate_limited beyond)")
	keyBurst := fs.Int("http.key-burst", lbhttp.DefaultKeyBurst, "burst of requests allowed per API key")
	uploadQuota := fs.Int64("uploads.project-quota", wandb.DefaultProjectQuota, "bytes of W&B run files a project may store (413 upload_quota_exceeded beyond)")
	cli.AddMemoryLimit(fs)
	return func(ctx context.Context, e *cli.Env, _ []string) error {
		if *crashAfter <= 0 {
			return cli.UsageError{Msg: fmt.Sprintf("-runs.crash-after must be positive, not %s", *crashAfter)}
		}
		if *uploadQuota <= 0 {
			return cli.UsageError{Msg: fmt.Sprintf("-uploads.project-quota must be positive, not %d", *uploadQuota)}
		}
		log, err := cli.Logger(e.Err, *logLevel)
		if err != nil {
			return err
		}
		return app.AllInOne(ctx, app.AllInOneConfig{
			DataDir:     *dataDir,
			HTTPAddr:    *httpAddr,
			NATSAddr:    *natsAddr,
			AdminKey:    os.Getenv("LOGBOOK_ADMIN_API_KEY"),
			Durable:     *durable,
			CrashAfter:  *crashAfter,
			KeyRate:     *keyRate,
			KeyBurst:    *keyBurst,
			UploadQuota: *uploadQuota,
			Log:         log,
		}, e.Out, nil)
	}
}
