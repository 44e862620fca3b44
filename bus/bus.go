// Package bus is Logbook's NATS JetStream adapter: the embedded server, the
// stream topology, idempotent and conflict-checked appends, and reading the
// log. JetStream's error codes are mapped to this package's sentinel errors
// here and nowhere else.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/events"
)

// Stream names.
const (
	InboxStream      = "LB_PROPOSALS"
	EventsStream     = "LB_EVENTS"
	RejectionsStream = "LB_REJECTIONS"
	DeciderConsumer  = "decider"
	// BulkStream is the inbox's bulk lane: metric batches of runs the edge
	// knows, bounded (Config.BulkMsgs), so a writer past the bound is
	// slowed down (429 or a held request) instead of queued; every other
	// proposal travels in InboxStream, which metric batches cannot block.
	BulkStream   = "LB_BULK"
	BulkConsumer = "decider-bulk"
)

// MaxPayload is the largest message the embedded server accepts; the HTTP
// edges refuse bodies well below it.
const MaxPayload = 8 << 20

// Config is the topology's configuration.
type Config struct {
	Subjects      events.Subjects
	Replicas      int           // 1 on one machine, 3 in a cluster
	RejectionsAge time.Duration // how long rejections are kept
	// DuplicateWindow is JetStream's Nats-Msg-Id window on the events stream.
	DuplicateWindow time.Duration
	// Log receives the retries of EnsureTopology (slog.Default() if nil).
	Log *slog.Logger
	// BulkMsgs bounds the bulk lane of the inbox (BulkStream) in batches:
	// past it a batch is refused with ErrFull (the edge holds the request,
	// then answers 429). 64 batches of 1,000 rows of 20 metrics (50 MB)
	// are about what the decider clears in a second on two cores. A bound
	// in bytes would make JetStream reserve them from the storage limit,
	// which a nearly full disk (GuardStorage) cannot give: the server
	// then refuses to create the stream.
	BulkMsgs int64
	// CompressEvents stores the events stream S2-compressed (JetStream
	// compresses whole message blocks on disk; readers see no change).
	// Set it alike on every component: each one's EnsureTopology applies it.
	CompressEvents bool
}

// DefaultConfig returns the single-machine topology.
func DefaultConfig() Config {
	return Config{
		Subjects:        events.Subjects{Prefix: events.DefaultPrefix},
		Replicas:        1,
		RejectionsAge:   30 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		BulkMsgs:        DefaultBulkMsgs,
	}
}

// DefaultBulkMsgs is the bulk lane's default bound.
const DefaultBulkMsgs = 64

// EnsureTopology creates or updates the streams and the decider's consumers.
// It is idempotent: every component calls it at start. Transient failures
// (a cluster electing its leaders, a server still starting, a request
// timing out) are retried until ctx ends.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, c Config) error {
	bulk := c.BulkMsgs
	if bulk <= 0 {
		bulk = DefaultBulkMsgs
	}
	compression := jetstream.NoCompression
	if c.CompressEvents {
		compression = jetstream.S2Compression
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        InboxStream,
			Description: "proposed events, consumed by the policy",
			Subjects:    []string{c.Subjects.AllProposals()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			MaxMsgSize:  MaxPayload,
		},
		{
			Name:        BulkStream,
			Description: "metric batches of known runs, bounded: the inbox's bulk lane",
			Subjects:    []string{c.Subjects.AllBulk()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			MaxMsgSize:  MaxPayload,
			MaxMsgs:     bulk,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        EventsStream,
			Description: "accepted events: the log, kept forever",
			Subjects:    []string{c.Subjects.AllEvents()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			MaxMsgSize:  MaxPayload,
			DenyDelete:  true,
			DenyPurge:   true,
			Compression: compression,
			// A decision of several events (an invite and the join it
			// causes) is appended as one atomic batch: all or nothing.
			AllowAtomicPublish: true,
		},
		{
			Name:        RejectionsStream,
			Description: "rejected proposals with their reasons",
			Subjects:    []string{c.Subjects.AllRejections()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			MaxAge:      c.RejectionsAge,
			MaxMsgSize:  MaxPayload,
		},
	}
	for _, sc := range streams {
		// Short attempts: when several components create a new R3
		// stream at once, nats-server answers only one of them; the
		// others time out and find it on their next (jittered) attempt.
		err := Retry(ctx, c.Log, "ensure stream "+sc.Name, ensureAttempt, func(ctx context.Context) error {
			if s, err := js.Stream(ctx, sc.Name); err == nil && streamMatches(s.CachedInfo().Config, sc) {
				return nil // as wanted: no update (a meta-layer proposal in a cluster)
			}
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return EnsureDecider(ctx, js, c.Log)
}

// ensureAttempt bounds one attempt to create or update a stream or the
// decider's consumer.
const ensureAttempt = 3 * time.Second

// streamMatches reports whether a stream's configuration has every setting
// EnsureTopology sets as it wants it.
func streamMatches(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Description == want.Description &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates) && have.MaxMsgSize == want.MaxMsgSize && have.MaxAge == want.MaxAge &&
		have.DenyDelete == want.DenyDelete && have.DenyPurge == want.DenyPurge && have.AllowAtomicPublish == want.AllowAtomicPublish &&
		have.MaxMsgs == want.MaxMsgs && have.Discard == want.Discard && have.Compression == want.Compression
}

// EnsureDecider creates or updates the decider's durable consumers on the
// inbox's two lanes, retrying transient failures until ctx ends.
func EnsureDecider(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	if err := ensureDecider(ctx, js, log, InboxStream, DeciderConsumer); err != nil {
		return err
	}
	return ensureDecider(ctx, js, log, BulkStream, BulkConsumer)
}

func ensureDecider(ctx context.Context, js jetstream.JetStream, log *slog.Logger, stream, name string) error {
	want := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "the policy decider",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	err := Retry(ctx, log, "ensure decider consumer on "+stream, ensureAttempt, func(ctx context.Context) error {
		if c, err := js.Consumer(ctx, stream, name); err == nil {
			if have := c.CachedInfo().Config; have.Description == want.Description && have.AckPolicy == want.AckPolicy &&
				have.AckWait == want.AckWait && have.MaxAckPending == want.MaxAckPending && have.DeliverPolicy == want.DeliverPolicy {
				return nil
			}
		}
		_, err := js.CreateOrUpdateConsumer(ctx, stream, want)
		return err
	})
	if err != nil {
		return fmt.Errorf("ensure decider consumer on %s: %w", stream, err)
	}
	return nil
}

// EmbeddedOptions configure the in-process nats-server.
type EmbeddedOptions struct {
	Dir  string // JetStream storage directory
	Host string
	Port int // -1 for a random port
	// SyncAlways makes JetStream fsync every write (durable mode).
	SyncAlways bool
	// Auth, when set, turns on authentication (see EmbeddedAuth).
	Auth *EmbeddedAuth
}

// StartEmbedded starts an in-process nats-server with JetStream and waits
// until it accepts connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{}
	if o.Auth != nil {
		// The accounts first: the fields below must not be overwritten.
		if err := o.Auth.configure(opts); err != nil {
			return nil, err
		}
		// A data directory of a release without accounts: its streams
		// were in the global account.
		if _, err := MigrateGlobalAccount(filepath.Clean(o.Dir)); err != nil {
			return nil, err
		}
	}
	opts.ServerName = "logbook"
	opts.Host = o.Host
	opts.Port = o.Port
	opts.JetStream = true
	opts.StoreDir = filepath.Clean(o.Dir)
	opts.MaxPayload = MaxPayload
	opts.NoSigs = true
	opts.NoLog = true
	opts.SyncAlways = o.SyncAlways
	// The server's limit is the disk's size: StorageGuard sets the
	// account's below the free space (it cannot exceed the server's).
	if _, size, ok := spaceOf(opts.StoreDir); ok && size > 0 {
		opts.JetStreamMaxStore = size
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats did not become ready within 30s")
	}
	return s, nil
}

// ClientURL returns the nats:// URL of a started server.
func ClientURL(s *server.Server) string {
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		return "nats://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
	}
	return s.ClientURL()
}

// LogConnection reports the connection's disconnects and reconnects (with
// the server it reconnected to) to log: when a node of a cluster is lost,
// the components' logs say where each one went.
func LogConnection(log *slog.Logger) nats.Option {
	return func(o *nats.Options) error {
		o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
			log.Warn("nats disconnected, reconnecting", "err", err)
		}
		o.ReconnectedCB = func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedServerName(), "url", nc.ConnectedUrlRedacted())
		}
		return nil
	}
}

// AckTimeout bounds the wait for one append's acknowledgement before it is
// sent again (same Nats-Msg-Id, so it is stored once).
const AckTimeout = 5 * time.Second

// Connect connects to NATS with reconnects forever and returns the
// connection and its JetStream context.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	// An async publish whose ack never comes (its server went away) fails
	// after AckTimeout, and AppendAll retries it with the same Nats-Msg-Id.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(AckTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
