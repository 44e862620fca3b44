package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/projections"
)

// js connects to the Logbook's NATS once.
func (s *server) jetStream() (jetstream.JetStream, error) {
	s.jsOnce.Do(func() {
		if s.natsURL == "" {
			s.jsErr = fmt.Errorf("no NATS URL: pass -nats.url with -url (nats://user:password@host:port, a user with rights on the streams)")
			return
		}
		_, s.js, s.jsErr = bus.Connect(s.natsURL, "loadgen", s.natsOpts...)
	})
	return s.js, s.jsErr
}

// streamMsgs returns the number of messages in a stream (0 when NATS is
// not reachable).
func (s *server) streamMsgs(ctx context.Context, name string) int64 {
	js, err := s.jetStream()
	if err != nil {
		return 0
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return int64(info.State.Msgs)
}

// eventCount returns the number of events in the log (0 when NATS is not
// reachable).
func (s *server) eventCount(ctx context.Context) int64 {
	js, err := s.jetStream()
	if err != nil {
		return 0
	}
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return int64(info.State.Msgs)
}

// rebuild replays the whole events stream into an empty read model, after
// reading the same stream raw (no decoding, no writes) as its baseline.
func rebuild(ctx context.Context, c config, s *server, rep *report) error {
	js, err := s.jetStream()
	if err != nil {
		return err
	}
	msgs, rawSecs, err := rawRead(ctx, js, bus.EventsStream)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "logbook-rebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := projections.Open(projections.Options{Dir: dir})
	if err != nil {
		return err
	}
	defer st.Close()
	cpu0 := readProc(os.Getpid())
	start := time.Now()
	if _, err := st.ReplayTo(ctx, (&bus.Client{JS: js}).EventLog().Source(false), 0, nil); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	cpu1 := readProc(os.Getpid())
	points, err := storedPoints(st)
	if err != nil {
		return err
	}
	rep.printRebuild(msgs, points, secs, rawSecs, cpu1.sub(cpu0, secs))
	return nil
}

// storedPoints sums the point counts of every metric of every run.
func storedPoints(st *projections.Store) (int64, error) {
	var n int64
	err := st.DB().View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("run/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(b []byte) error {
				var r projections.Run
				if err := json.Unmarshal(b, &r); err != nil {
					return err
				}
				for _, m := range r.Metrics {
					n += m.Count
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
