// Package app wires Logbook's parts into runnable components: ingest (the
// decider and the write API), the projector (read model and read service)
// and query (the HTTP read API). The three mains and the all-in-one command
// use the same components.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
)

// Bus is a connection to NATS with the topology ensured.
type Bus struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Config  bus.Config
	Log     *slog.Logger
	Subject events.Subjects
}

// ConnectBus connects to NATS and ensures the streams exist.
func ConnectBus(ctx context.Context, url, name string, cfg bus.Config, log *slog.Logger, opts ...nats.Option) (*Bus, error) {
	nc, js, err := bus.Connect(url, name, opts...)
	if err != nil {
		return nil, err
	}
	if err := bus.EnsureTopology(ctx, js, cfg); err != nil {
		nc.Close()
		return nil, err
	}
	return &Bus{NC: nc, JS: js, Config: cfg, Log: log, Subject: cfg.Subjects}, nil
}

// Close drains the connection.
func (b *Bus) Close() { _ = b.NC.Drain() }

// Ingest is the write side: the decider and the HTTP edge.
type Ingest struct {
	Decider  *ingest.Decider
	Proposer *ingest.Proposer
	Edge     *ingest.Edge
	// Bus is the NATS connection ingest runs on (the W&B adapter keeps
	// uploaded files in a JetStream object store).
	Bus *Bus
	// Sweeper marks quiet runs crashed; run it beside the decider.
	Sweeper *ingest.Sweeper
}

// SetCrashAfter sets the crash timeout of the policy and the sweeper
// (policy.DefaultCrashAfter unless set).
func (in *Ingest) SetCrashAfter(after time.Duration) {
	in.Decider.SetCrashAfter(after)
	in.Sweeper.CrashAfter = after
}

// NewIngest builds the write side on b.
func NewIngest(b *Bus) *Ingest {
	log := b.Log.With("component", "ingest")
	d := ingest.NewDecider(b.NC, b.JS, b.Subject, log)
	p := ingest.NewProposer(b.NC, b.JS, b.Subject)
	sw := &ingest.Sweeper{Decider: d, Proposer: p, CrashAfter: policy.DefaultCrashAfter, Log: log.With("part", "crash-sweeper")}
	return &Ingest{Decider: d, Proposer: p, Edge: &ingest.Edge{Decider: d, Proposer: p, Log: log}, Bus: b, Sweeper: sw}
}

// Serve runs an HTTP server on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// CleanPaths collapses repeated slashes in request paths before h routes
// them: W&B clients build URLs by appending "/graphql" to WANDB_BASE_URL, so
// a base URL with a trailing slash gives "//graphql", which http.ServeMux
// would answer with a redirect that turns a POST into a GET.
func CleanPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "//") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = collapseSlashes(r.URL.Path)
			if r.URL.RawPath != "" {
				r2.URL.RawPath = collapseSlashes(r.URL.RawPath)
			}
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

func collapseSlashes(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// Health answers liveness probes.
func Health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
}
