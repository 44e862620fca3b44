package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Where run files live: a JetStream object store, one object per
// entity/project/run/file. The key that signs upload URLs is generated once
// and kept in a JetStream key-value bucket, so URLs stay valid across
// restarts and across ingest processes.
const (
	FilesBucket  = "logbook_wandb_files"
	SecretBucket = "logbook_wandb"
	secretKey    = "upload_signing_key"
)

// Files is the W&B adapter's store of run files.
type Files struct {
	js       jetstream.JetStream
	replicas int
	log      *slog.Logger

	mu     sync.Mutex
	store  jetstream.ObjectStore
	secret []byte
}

// open creates the bucket and the signing key on first use (idempotently:
// several processes may race), retrying on later calls if it failed.
func (f *Files) open(ctx context.Context) (jetstream.ObjectStore, []byte, error) {
	if f == nil {
		return nil, nil, errors.New("no object store configured")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store != nil {
		return f.store, f.secret, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	replicas := max(f.replicas, 1)
	kv, err := f.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SecretBucket, Replicas: replicas,
		Storage: jetstream.FileStorage, Description: "Logbook W&B adapter: upload URL signing key"})
	if err != nil {
		return nil, nil, fmt.Errorf("open key-value bucket %s: %w", SecretBucket, err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if _, err := kv.Create(ctx, secretKey, []byte(hex.EncodeToString(key))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, nil, fmt.Errorf("store upload signing key: %w", err)
	}
	e, err := kv.Get(ctx, secretKey)
	if err != nil {
		return nil, nil, fmt.Errorf("read upload signing key: %w", err)
	}
	secret, err := hex.DecodeString(string(e.Value()))
	if err != nil || len(secret) < 16 {
		return nil, nil, fmt.Errorf("upload signing key in %s is damaged", SecretBucket)
	}
	os, err := f.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: FilesBucket, Replicas: replicas,
		Storage: jetstream.FileStorage, Description: "Logbook W&B adapter: run files"})
	if err != nil {
		return nil, nil, fmt.Errorf("open object store %s: %w", FilesBucket, err)
	}
	f.store, f.secret = os, secret
	return os, secret, nil
}

// NewFiles returns the run file store on c's JetStream.
func (c *Client) Files() *Files {
	return &Files{js: c.JS, replicas: c.Config.Replicas, log: c.Log}
}

// Secret implements wandb.FileStore.
func (f *Files) Secret(ctx context.Context) ([]byte, error) {
	_, secret, err := f.open(ctx)
	return secret, err
}

// Put implements wandb.FileStore.
func (f *Files) Put(ctx context.Context, name string, body io.Reader) error {
	store, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	_, err = store.Put(ctx, jetstream.ObjectMeta{Name: name}, body)
	return err
}

// Usage implements wandb.FileStore: the sizes of the objects whose names
// start with prefix, except the one named except. It lists the bucket's
// object metadata (one small message per object).
func (f *Files) Usage(ctx context.Context, prefix, except string) (int64, error) {
	store, _, err := f.open(ctx)
	if err != nil {
		return 0, err
	}
	list, err := store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range list {
		if !o.Deleted && o.Name != except && strings.HasPrefix(o.Name, prefix) {
			n += int64(o.Size)
		}
	}
	return n, nil
}
