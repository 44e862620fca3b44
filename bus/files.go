package bus

import (
	"cmp"
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
	FilesBucket = "logbook_wandb_files"
	// ArtifactsBucket holds artifact file bodies, one object per content
	// digest ("objects/<hex md5>"), and manifests ("manifests/<id>").
	ArtifactsBucket = "logbook_artifacts"
	SecretBucket    = "logbook_wandb"
	secretKey       = "upload_signing_key"
)

// Files is the W&B adapter's store of run files.
type Files struct {
	bucket   string
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
	bucket := cmp.Or(f.bucket, FilesBucket)
	os, err := f.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Replicas: replicas,
		Storage: jetstream.FileStorage, Description: "Logbook: " + bucket})
	if err != nil {
		return nil, nil, fmt.Errorf("open object store %s: %w", bucket, err)
	}
	f.store, f.secret = os, secret
	return os, secret, nil
}

// Files returns the run file store on c's JetStream.
func (c *Client) Files() *Files {
	return &Files{bucket: FilesBucket, js: c.JS, replicas: c.Config.Replicas, log: c.Log}
}

// Artifacts returns the artifact store on c's JetStream (same signing key).
func (c *Client) Artifacts() *Files {
	return &Files{bucket: ArtifactsBucket, js: c.JS, replicas: c.Config.Replicas, log: c.Log}
}

// Stat returns a stored object's description, and whether it exists.
func (f *Files) Stat(ctx context.Context, name string) (query.FileInfo, bool, error) {
	store, _, err := f.open(ctx)
	if err != nil {
		return query.FileInfo{}, false, err
	}
	info, err := store.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return query.FileInfo{}, false, nil
	}
	if err != nil {
		return query.FileInfo{}, false, err
	}
	return fileInfo(info), true, nil
}

// Delete removes a stored object.
func (f *Files) Delete(ctx context.Context, name string) error {
	store, _, err := f.open(ctx)
	if err != nil {
		return err
	}
	err = store.Delete(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	return err
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
	_, err := f.PutObject(ctx, name, body, nil)
	return err
}

// Usage implements wandb.FileStore: the sizes of the objects whose names
// start with prefix, except the one named except.
func (f *Files) Usage(ctx context.Context, prefix, except string) (int64, error) {
	list, err := f.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range list {
		if o.Name != except {
			n += o.Size
		}
	}
	return n, nil
}

// PutObject stores body under name with metadata meta, adding the body's
// MD5 (base64, key "md5"), and returns what it stored.
func (f *Files) PutObject(ctx context.Context, name string, body io.Reader, meta map[string]string) (query.FileInfo, error) {
	store, _, err := f.open(ctx)
	if err != nil {
		return query.FileInfo{}, err
	}
	h := md5.New()
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(body, h))
	if err != nil {
		return query.FileInfo{}, err
	}
	m := info.ObjectMeta
	m.Metadata = map[string]string{}
	for k, v := range meta {
		m.Metadata[k] = v
	}
	m.Metadata[md5Key] = base64.StdEncoding.EncodeToString(h.Sum(nil))
	if err := store.UpdateMeta(ctx, name, m); err != nil {
		return query.FileInfo{}, err
	}
	info.Metadata = m.Metadata
	return fileInfo(info), nil
}

func fileInfo(info *jetstream.ObjectInfo) query.FileInfo {
	return query.FileInfo{Name: info.Name, Size: int64(info.Size), MD5: info.Metadata[md5Key], Updated: info.ModTime.UTC(), Meta: info.Metadata}
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

// PutVerified stores body under name only if its MD5 (base64) is wantMD5:
// it is written under a temporary name, checked, then renamed, so a wrong
// or broken upload never replaces a stored object. An object already
// stored under name is kept (content-addressed names hold one content).
func (f *Files) PutVerified(ctx context.Context, name string, body io.Reader, wantMD5 string, meta map[string]string) (query.FileInfo, error) {
	if fi, ok, err := f.Stat(ctx, name); err != nil {
		return fi, err
	} else if ok && fi.MD5 == wantMD5 {
		_, _ = io.Copy(io.Discard, body)
		return fi, nil
	}
	tmp := make([]byte, 8)
	_, _ = rand.Read(tmp)
	tmpName := "tmp/" + hex.EncodeToString(tmp) + "/" + name
	fi, err := f.PutObject(ctx, tmpName, body, meta)
	if err != nil {
		_ = f.Delete(ctx, tmpName)
		return fi, err
	}
	if fi.MD5 != wantMD5 {
		_ = f.Delete(ctx, tmpName)
		return fi, errs.New(errs.Invalid, "digest_mismatch", "the body's MD5 is %s, not %s", fi.MD5, wantMD5)
	}
	store, _, err := f.open(ctx)
	if err != nil {
		return fi, err
	}
	m := jetstream.ObjectMeta{Name: name, Metadata: fi.Meta}
	if err := store.UpdateMeta(ctx, tmpName, m); err != nil {
		_ = f.Delete(ctx, tmpName)
		if errors.Is(err, jetstream.ErrObjectAlreadyExists) {
			st, _, err := f.Stat(ctx, name)
			return st, err
		}
		return fi, err
	}
	fi.Name = name
	return fi, nil
}
