package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/run"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/metrics"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/projections"
)

// AllInOneConfig configures the single-process Logbook.
type AllInOneConfig struct {
	DataDir  string
	HTTPAddr string
	NATSAddr string // host:port of the embedded server's client port; port 0 picks one
	// AdminKey is the first site admin's API key; empty generates one.
	AdminKey string
	Durable  bool
	// KeyRate and KeyBurst rate-limit each API key at the HTTP edge
	// (lbhttp.DefaultKeyRate and DefaultKeyBurst if zero).
	KeyRate  float64
	KeyBurst int
	// CrashAfter is how long a running run may stay quiet before it is
	// marked crashed (policy.DefaultCrashAfter if zero).
	CrashAfter time.Duration
	// UploadQuota bounds the bytes of W&B run files per project
	// (wandb.DefaultProjectQuota if zero).
	UploadQuota int64
	// CompressEvents stores the events stream S2-compressed (see
	// bus.Config.CompressEvents; measured in the README's Performance).
	CompressEvents bool
	Log            *slog.Logger
}

// Addrs are where a started Logbook listens.
type Addrs struct {
	HTTP string // http://host:port
	NATS string // nats://host:port
	// NATSAuth is the embedded server's credentials of Logbook's own
	// components (full rights), for in-process tools and tests.
	NATSAuth *bus.EmbeddedAuth
}

// AllInOne runs an embedded NATS server and every component in this process
// until ctx ends. It reports where it listens on ready (if not nil) and
// prints the URLs, and the admin key on first start, to out.
func AllInOne(ctx context.Context, c AllInOneConfig, out io.Writer, ready func(Addrs)) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fmt.Fprintf(out, "Starting Logbook (data in %s)...\n", c.DataDir)
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	host, port, err := splitHostPort(c.NATSAddr)
	if err != nil {
		return fmt.Errorf("-nats.addr: %w", err)
	}
	// Both ports first: a port in use fails at once, naming its flag.
	ln, err := Listen(c.HTTPAddr, "-http.addr")
	if err != nil {
		return err
	}
	defer ln.Close()
	if port > 0 {
		nl, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			return fmt.Errorf("the embedded NATS server cannot listen on -nats.addr %s: %w (another Logbook or nats-server? choose another port with -nats.addr, or 127.0.0.1:0 for a free one)", c.NATSAddr, err)
		}
		nl.Close()
	}
	// Clients authenticate with their API key through the auth callout;
	// Logbook's own connection uses a password generated for this run.
	auth, issuer, err := embeddedAuth()
	if err != nil {
		return err
	}
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{Dir: filepath.Join(c.DataDir, "nats"), Host: host, Port: port, SyncAlways: c.Durable, Auth: auth})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	natsURL := bus.ClientURL(ns)
	// Refuse writes (507 storage_full) before the disk is full, and take
	// them again when space comes back (see bus.StorageGuard).
	guard := &bus.StorageGuard{Server: ns, Account: bus.LogbookAccount, Dir: c.DataDir, Log: log.With("component", "storage")}
	if err := guard.Check(); err != nil {
		log.Warn("storage guard", "err", err)
	}
	gctx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	go guard.Run(gctx, time.Second)

	bc := bus.DefaultConfig()
	bc.CompressEvents = c.CompressEvents
	b, err := bus.Dial(ctx, natsURL, "logbook", bc, log, nats.UserInfo(auth.User, auth.Password))
	if err != nil {
		return err
	}
	defer b.Close()

	adminKey := c.AdminKey
	if adminKey == "" {
		adminKey = ingest.NewAPIKey()
	}
	proj, err := NewProjector(b, projections.Options{Dir: filepath.Join(c.DataDir, "readmodel"), SyncWrites: c.Durable})
	if err != nil {
		return err
	}
	in, err := NewIngest(b, IngestConfig{AdminKey: adminKey, KeyRate: c.KeyRate, KeyBurst: c.KeyBurst, CrashAfter: c.CrashAfter,
		UploadQuota: c.UploadQuota},
		proj.ReadModel.Reader)
	if err != nil {
		proj.ReadModel.Close()
		return err
	}
	m := metrics.New("logbook")
	in.Instrument(m)
	m.SetProbes(metrics.Probes{Streams: StreamsProbe(b.JS), Decider: DeciderProbe(b.JS), Projector: ProjectorProbe(b.JS, proj.ReadModel)})
	ops := OpsRoutes(m, in.Ready, proj.Ready, NATSReady(b))
	ops.Notes = append(ops.Notes, in.Lagging)
	reads := &lbhttp.Reads{Reader: proj.ReadModel.Reader, Log: log.With("component", "query")}
	admin := &lbhttp.Admin{ReadModel: proj.ReadModel, Log: log.With("component", "projector")}
	addrs := Addrs{HTTP: "http://" + ln.Addr().String(), NATS: natsURL, NATSAuth: auth}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error { return in.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return in.Callout(issuer, bus.ServerKicker{S: ns}).Serve(ctx, b.NC) }, func(error) { cancel() })
	g.Add(func() error { return proj.Run(ctx, true) }, func(error) { cancel() })
	g.Add(func() error {
		return ServeHTTP(ctx, ln, log, true, append(in.Routes(), reads, admin, ops)...)
	}, func(error) { cancel() })
	g.Add(func() error {
		select {
		case <-in.Service.Ready():
		case <-ctx.Done():
			return nil
		}
		if err := CheckAdminKey(in, c.AdminKey); err != nil {
			return err
		}
		fmt.Fprintf(out, "Logbook is running.\n  Web/API: %s\n  NATS:    %s\n  Data:    %s\n  Metrics: %s/metrics (ready: %s/readyz)\n",
			addrs.HTTP, addrs.NATS, c.DataDir, addrs.HTTP, addrs.HTTP)
		for _, seq := range in.Service.Decider.Unreadable() {
			fmt.Fprintf(out, "WARNING: the event at stream sequence %d of LB_EVENTS cannot be read; its project refuses writes and the read model waits at it.\n  If it is corrupt or foreign, skip it for good with: %s\n",
				seq, events.QuarantineCommand(seq))
		}
		if in.Service.Decider.SeedCreated {
			if c.AdminKey == "" {
				fmt.Fprintf(out, "Created the site admin \"admin\". Its API key (shown once, only its hash is stored):\n  %s\n", adminKey)
			} else {
				fmt.Fprintf(out, "Created the site admin \"admin\" with the key from LOGBOOK_ADMIN_API_KEY.\n")
			}
		}
		if ready != nil {
			ready(addrs)
		}
		<-ctx.Done()
		return nil
	}, func(error) { cancel() })
	return g.Run()
}

// CheckAdminKey refuses LOGBOOK_ADMIN_API_KEY on a data directory whose
// admin already exists with other keys: the variable only seeds the first
// start, and ignoring it silently left people locked out.
func CheckAdminKey(in *Ingest, key string) error {
	if key == "" || in.Service.Decider.SeedCreated {
		return nil
	}
	known := false
	in.Service.Decider.View(func(s *policy.State) {
		u, ok := s.UserByKeyHash(policy.HashKey(key))
		known = ok && u.SiteAdmin
	})
	if known {
		return nil
	}
	return errors.New("LOGBOOK_ADMIN_API_KEY is set, but this data directory already has its site admin and the key is not one of a site admin's keys " +
		"(the variable only chooses the key on the first start). To make it the admin's key: stop Logbook and run " +
		"'LOGBOOK_ADMIN_API_KEY=... logbook admin reset-key -data.dir <dir>'; otherwise unset it")
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var port int
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	if port == 0 {
		port = -1 // nats-server's "random port"
	}
	return host, port, nil
}
