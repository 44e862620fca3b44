package bus

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/query"
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

// md5Key is the object metadata key holding base64(MD5(body)), the digest
// W&B clients compare.
const md5Key = "md5"

// Put implements wandb.FileStore.
func (f *Files) Put(ctx context.Context, name string, body io.Reader) error {
	store, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	h := md5.New()
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(body, h))
	if err != nil {
		return err
	}
	meta := info.ObjectMeta
	meta.Metadata = map[string]string{md5Key: base64.StdEncoding.EncodeToString(h.Sum(nil))}
	return store.UpdateMeta(ctx, name, meta)
}

func fileInfo(info *jetstream.ObjectInfo) query.FileInfo {
	return query.FileInfo{Name: info.Name, Size: int64(info.Size), MD5: info.Metadata[md5Key], Updated: info.ModTime.UTC()}
}

// List implements query.FileStore. The object store has no index by
// prefix: it reads every object's metadata.
func (f *Files) List(ctx context.Context, prefix string) ([]query.FileInfo, error) {
	store, _, err := f.open(ctx)
	if err != nil {
		return nil, err
	}
	infos, err := store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []query.FileInfo
	for _, info := range infos {
		if !info.Deleted && strings.HasPrefix(info.Name, prefix) {
			out = append(out, fileInfo(info))
		}
	}
	return out, nil
}

// Get implements query.FileStore.
func (f *Files) Get(ctx context.Context, name string) (io.ReadCloser, query.FileInfo, error) {
	store, _, err := f.open(ctx)
	if err != nil {
		return nil, query.FileInfo{}, errs.New(errs.Unavailable, "unavailable", "file storage is unavailable; retry later")
	}
	res, err := store.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, query.FileInfo{}, errs.New(errs.NotFound, "file_not_found", "no file %q", name)
	}
	if err != nil {
		return nil, query.FileInfo{}, err
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, query.FileInfo{}, err
	}
	return res, fileInfo(info), nil
}
