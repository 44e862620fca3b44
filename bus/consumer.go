package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deleteConsumer removes a finished ordered consumer from the server.
func deleteConsumer(js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}
