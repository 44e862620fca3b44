package query

import (
	"context"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/logbook/logbook/errs"
)

// FileInfo describes a stored file.
type FileInfo struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	MD5     string    `json:"md5,omitempty"` // base64 of the MD5 of the bytes, as W&B writes it
	Updated time.Time `json:"updated_at"`
	// Meta is the object's stored metadata (not shown).
	Meta map[string]string `json:"-"`
}

// FileStore reads stored files (bus.Files: a JetStream object store).
type FileStore interface {
	// List returns the files whose names start with prefix.
	List(ctx context.Context, prefix string) ([]FileInfo, error)
	// Get opens a file; a missing one is an errs.NotFound.
	Get(ctx context.Context, name string) (io.ReadCloser, FileInfo, error)
}

// RunFileObject is where a run's file is stored: entity/project/run/file
// (entity, project and run id hold no '/').
func RunFileObject(entity, project, run, file string) string {
	return entity + "/" + project + "/" + run + "/" + file
}

// RunFiles answers the files a run's clients uploaded (W&B CreateRunFiles)
// to callers who may read the run: the read service decides, as for the
// run itself (a non-member gets not-found).
type RunFiles struct {
	Reader Reader
	Store  FileStore
}

func (f *RunFiles) check(ctx context.Context, keyHash, entity, project, run string) error {
	_, err := f.Reader.Read(ctx, Request{KeyHash: keyHash, Op: OpRun, Entity: entity, Project: project, Run: run})
	return err
}

// List returns a run's files sorted by name, names relative to the run.
func (f *RunFiles) List(ctx context.Context, keyHash, entity, project, run string) ([]FileInfo, error) {
	if err := f.check(ctx, keyHash, entity, project, run); err != nil {
		return nil, err
	}
	prefix := RunFileObject(entity, project, run, "")
	list, err := f.Store.List(ctx, prefix)
	if err != nil {
		return nil, errs.New(errs.Unavailable, "unavailable", "run file storage is unavailable: %v", err)
	}
	out := make([]FileInfo, 0, len(list))
	for _, fi := range list {
		if name, ok := strings.CutPrefix(fi.Name, prefix); ok && name != "" {
			fi.Name = name
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Open opens one of a run's files.
func (f *RunFiles) Open(ctx context.Context, keyHash, entity, project, run, name string) (io.ReadCloser, FileInfo, error) {
	if err := f.check(ctx, keyHash, entity, project, run); err != nil {
		return nil, FileInfo{}, err
	}
	rc, fi, err := f.Store.Get(ctx, RunFileObject(entity, project, run, name))
	if err != nil {
		return nil, fi, err
	}
	fi.Name = name
	return rc, fi, nil
}
