package bus

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/events"
)

// Position is a projector's announcement of how far its read model has
// folded the log, on events.Subjects.Position (core NATS, Logbook's account
// only). The ingest edges hold metric writers while the read models lag
// (ingest.Freshness), so every projector announces, the all-in-one's too.
type Position struct {
	Projector string `json:"projector"`
	// Seq is the last events-stream sequence folded.
	Seq uint64 `json:"seq"`
	// Serving is false while the read model catches up at start or waits
	// at an unreadable event: the edges do not wait for it then.
	Serving bool `json:"serving"`
}

// Announcing is how often a projector looks at its position and announces
// it when it moved; an unchanged one is announced every AnnounceIdle.
const (
	Announcing   = 25 * time.Millisecond
	AnnounceIdle = time.Second
)

// AnnouncePositions publishes pos() when it changes (looked at every
// Announcing) and at least every AnnounceIdle, until ctx ends.
func AnnouncePositions(ctx context.Context, nc *nats.Conn, subj events.Subjects, pos func() Position) {
	t := time.NewTicker(Announcing)
	defer t.Stop()
	var last Position
	var sent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := pos()
			if p == last && now.Sub(sent) < AnnounceIdle {
				continue
			}
			data, err := json.Marshal(p)
			if err != nil {
				continue
			}
			if nc.Publish(subj.Position(p.Projector), data) == nil {
				last, sent = p, now
			}
		}
	}
}

// FollowPositions calls fn with every projector's announcements until the
// returned subscription is unsubscribed.
func FollowPositions(nc *nats.Conn, subj events.Subjects, fn func(Position)) (*nats.Subscription, error) {
	return nc.Subscribe(subj.Positions(), func(m *nats.Msg) {
		var p Position
		if json.Unmarshal(m.Data, &p) == nil && p.Projector != "" {
			fn(p)
		}
	})
}

// OldestStored is when a stream's first message was stored, zero when the
// stream is empty: for a work queue (the inbox's lanes), the oldest
// proposal not yet decided and acknowledged.
func OldestStored(ctx context.Context, js jetstream.JetStream, stream string) (time.Time, error) {
	s, err := js.Stream(ctx, stream) // one request: it fetches the stream's info
	if err != nil {
		return time.Time{}, err
	}
	info := s.CachedInfo()
	if info.State.Msgs == 0 {
		return time.Time{}, nil
	}
	return info.State.FirstTime, nil
}
