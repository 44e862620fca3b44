package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deleteConsumer removes a finished read's consumer from the server.
func deleteConsumer(js jetstream.JetStream, stream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, name)
}
