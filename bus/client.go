package bus

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/projections"
	"github.com/logbook/logbook/query"
)

// Client is a component's connection to NATS with the topology ensured.
type Client struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Config  Config
	Log     *slog.Logger
	Subject events.Subjects
}

// Dial connects to NATS and ensures the streams exist.
func Dial(ctx context.Context, url, name string, cfg Config, log *slog.Logger, opts ...nats.Option) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, js, err := Connect(url, name, append(opts, LogConnection(log))...)
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = log
	}
	if err := EnsureTopology(ctx, js, cfg); err != nil {
		nc.Close()
		return nil, err
	}
	return &Client{NC: nc, JS: js, Config: cfg, Log: log, Subject: cfg.Subjects}, nil
}

// Close drains the connection.
func (c *Client) Close() { _ = c.NC.Drain() }

// EventLog is the events stream as the read side reads it.
func (c *Client) EventLog() query.EventLog {
	return query.EventLog{
		Source: func(follow bool) projections.Source {
			return func(ctx context.Context, from uint64, fn func([]projections.RawRecord) error) error {
				return c.readRecords(ctx, ReadOptions{Stream: EventsStream, From: from, Batch: 1000, Follow: follow, Log: c.Log}, fn)
			}
		},
		Filtered: func(ctx context.Context, filters []string, fn func([]projections.RawRecord) error) error {
			return c.readRecords(ctx, ReadOptions{Stream: EventsStream, Filters: filters, Batch: 1000, Log: c.Log}, fn)
		},
		LastSeq: func(ctx context.Context) (uint64, error) {
			s, err := c.JS.Stream(ctx, EventsStream)
			if err != nil {
				return 0, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.State.LastSeq, nil
		},
	}
}

func (c *Client) readRecords(ctx context.Context, o ReadOptions, fn func([]projections.RawRecord) error) error {
	recs := make([]projections.RawRecord, 0, o.Batch)
	return Read(ctx, c.JS, o, func(batch []Entry) error {
		recs = recs[:0]
		for _, e := range batch {
			recs = append(recs, projections.RawRecord{Seq: e.Seq, Data: e.Data, Time: e.Time})
		}
		return fn(recs)
	})
}
