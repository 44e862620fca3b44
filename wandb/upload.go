package wandb

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/query"
)

// Limits of uploads.
const (
	// UploadURLTTL is how long an upload URL is valid.
	UploadURLTTL = 24 * time.Hour
	// MaxUploadBytes bounds one uploaded file.
	MaxUploadBytes = 5 << 30
	maxFileName    = 512
	maxFilesPerReq = 1000
)

// FileStore keeps run files and the key that signs upload URLs (package
// bus implements it with a JetStream object store and key-value bucket).
type FileStore interface {
	// Secret is the upload URL signing key, the same for every process.
	Secret(ctx context.Context) ([]byte, error)
	// Put stores a file's body under name.
	Put(ctx context.Context, name string, body io.Reader) error
	// Usage is the bytes stored under names starting with prefix, the
	// object named except left out (a file about to be replaced).
	Usage(ctx context.Context, prefix, except string) (int64, error)
	// List and Get read the files back.
	query.FileStore
}

// DefaultProjectQuota is the default bound on the run files of a project.
const DefaultProjectQuota = 10 << 30

// ObjectName is where a run's file is stored in FilesBucket.
func ObjectName(entity, project, run, file string) string {
	return query.RunFileObject(entity, project, run, file)
}

// sign signs an upload URL: the object, the expiry and the key that asked
// for it (user and key id), so the URL stops working when that key is
// revoked.
func sign(secret []byte, object string, expires int64, user, keyID string) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "PUT\n%s\n%d\n%s\n%s", object, expires, user, keyID)
	return hex.EncodeToString(m.Sum(nil))
}

// validFileName accepts relative paths such as "media/images/x.png". Any
// character but NUL may appear in a part ('#', '?' and '\' included: the
// upload URL escapes them); empty, "." and ".." parts are refused.
func validFileName(name string) error {
	if name == "" || len(name) > maxFileName || !utf8.ValidString(name) {
		return fmt.Errorf("file name %q must be 1 to %d bytes of UTF-8", name, maxFileName)
	}
	if strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return fmt.Errorf("file name %q must be a relative path without NUL bytes", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("file name %q must not contain empty, '.' or '..' path parts", name)
		}
	}
	return nil
}

// baseURL is the scheme and host the client reached us at.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// uploadURLs checks that c may write the run and returns one signed PUT URL
// per file (nil for all when the object store is unavailable: the clients
// then skip the uploads).
func (s *Server) uploadURLs(r *http.Request, c *caller, entity, project, run string, files []string) ([]any, error) {
	var err error
	if entity, project, run, err = names(c, entity, project, run); err != nil {
		return nil, err
	}
	if len(files) > maxFilesPerReq {
		return nil, gqlErrorf("invalid", "at most %d files per request (got %d)", maxFilesPerReq, len(files))
	}
	if !s.in.Run(entity, project, run).Exists {
		return nil, gqlErrorf("run_not_found", "run %s/%s/%s does not exist; start it with init first", entity, project, run)
	}
	if rej := s.check(c, events.Event{Entity: entity, Project: project, Run: run, Payload: events.RunUpdatedV1{}}); rej != nil {
		return nil, refused(rej)
	}
	user, keyID, ok := s.in.KeyRef(c.keyHash)
	if !ok {
		return nil, gqlErrorf("unauthenticated", "the API key was revoked")
	}
	secret, err := s.files.Secret(r.Context())
	if err != nil {
		s.log.Error("run files unavailable", "err", err)
	}
	expires := time.Now().Add(UploadURLTTL).Unix()
	key := "&u=" + url.QueryEscape(user) + "&k=" + url.QueryEscape(keyID)
	out := make([]any, len(files))
	for i, f := range files {
		if secret == nil {
			out[i] = map[string]any{"name": f, "uploadUrl": nil}
			continue
		}
		if err := validFileName(f); err != nil {
			// Refuse this file only: the clients skip an entry without
			// an upload URL and upload the others.
			s.log.Info("run file refused", "run", entity+"/"+project+"/"+run, "err", err)
			out[i] = map[string]any{"name": f, "uploadUrl": nil}
			continue
		}
		obj := ObjectName(entity, project, run, f)
		u := baseURL(r) + "/files-upload/" + (&url.URL{Path: obj}).EscapedPath() +
			"?expires=" + strconv.FormatInt(expires, 10) + key + "&sig=" + sign(secret, obj, expires, user, keyID)
		out[i] = map[string]any{"name": f, "uploadUrl": u}
	}
	return out, nil
}

// requestedUploads reads entity, the project (named projectVar), run and
// files from a request's variables and returns an upload URL per file.
func (s *Server) requestedUploads(r *http.Request, c *caller, v vars, projectVar string) (list []any, run string, err error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str(projectVar)
	run, _, err = v.str("run")
	if err != nil {
		return nil, "", gqlErrorf("invalid", "%v", err)
	}
	files, _, err := v.strs("files")
	if err != nil {
		return nil, "", gqlErrorf("invalid", "%v", err)
	}
	list, err = s.uploadURLs(r, c, entity, project, run, files)
	return list, run, err
}

func (s *Server) createRunFiles(r *http.Request, c *caller, v vars) (any, error) {
	list, run, err := s.requestedUploads(r, c, v, "project")
	if err != nil {
		return nil, err
	}
	return map[string]any{"createRunFiles": map[string]any{"runID": bucketID("s", run), "uploadHeaders": []string{}, "files": list}}, nil
}

// runUploadURLs is the older clients' way to get upload URLs.
func (s *Server) runUploadURLs(r *http.Request, c *caller, v vars) (any, error) {
	list, run, err := s.requestedUploads(r, c, v, "name")
	if err != nil {
		return nil, err
	}
	edges := make([]any, len(list))
	for i, f := range list {
		m := f.(map[string]any)
		edges[i] = map[string]any{"node": map[string]any{"name": m["name"], "url": m["uploadUrl"], "updatedAt": nil}}
	}
	return map[string]any{"model": map[string]any{"bucket": map[string]any{"id": bucketID("s", run),
		"files": map[string]any{"uploadHeaders": []string{}, "edges": edges}}}}, nil
}

// upload stores a run file PUT to a signed URL (W&B clients send no API key
// with it: the signature is the authorization).
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	entity, project, run, file := r.PathValue("entity"), r.PathValue("project"), r.PathValue("run"), r.PathValue("file")
	for _, err := range []error{events.ValidateEntity(entity), events.ValidateProject(project), events.ValidateRunID(run), validFileName(file)} {
		if err != nil {
			lbhttp.WriteError(w, s.log, errs.New(errs.Invalid, "invalid", "%v", err))
			return
		}
	}
	secret, err := s.files.Secret(r.Context())
	if err != nil {
		s.log.Error("run files unavailable", "err", err)
		lbhttp.WriteError(w, s.log, errs.New(errs.Unavailable, "unavailable", "run file storage is unavailable; retry later"))
		return
	}
	obj := ObjectName(entity, project, run, file)
	q := r.URL.Query()
	expires, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	user, keyID := q.Get("u"), q.Get("k")
	if err != nil || !hmac.Equal([]byte(q.Get("sig")), []byte(sign(secret, obj, expires, user, keyID))) {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "forbidden", "the upload URL's signature is invalid; ask for a new URL (CreateRunFiles)"))
		return
	}
	if time.Now().Unix() > expires {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "expired", "the upload URL expired; ask for a new one (CreateRunFiles)"))
		return
	}
	if !s.in.KeyActive(user, keyID) {
		lbhttp.WriteError(w, s.log, errs.New(errs.Forbidden, "key_revoked", "the API key that asked for this upload URL was revoked; ask for a new URL with an active key"))
		return
	}
	// The project's quota: what is stored, this file's old version left
	// out (a replacement), bounds what this body may hold.
	quota := cmp.Or(s.ProjectQuota, DefaultProjectQuota)
	used, err := s.files.Usage(r.Context(), entity+"/"+project+"/", obj)
	if err != nil {
		s.log.Error("run files unavailable", "err", err)
		lbhttp.WriteError(w, s.log, errs.New(errs.Unavailable, "unavailable", "run file storage is unavailable; retry later"))
		return
	}
	quotaErr := errs.New(errs.TooLarge, "upload_quota_exceeded",
		"project %s/%s stores %d bytes of run files; its quota is %d bytes (ingest flag -uploads.project-quota), and this file does not fit", entity, project, used, quota)
	if used >= quota {
		lbhttp.WriteError(w, s.log, quotaErr)
		return
	}
	limit := min(int64(MaxUploadBytes), quota-used)
	body := http.MaxBytesReader(w, r.Body, limit)
	if err := s.files.Put(r.Context(), obj, body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) && limit < MaxUploadBytes {
			lbhttp.WriteError(w, s.log, quotaErr)
			return
		}
		if errors.As(err, &mbe) {
			lbhttp.WriteError(w, s.log, errs.New(errs.TooLarge, "too_large", "files are limited to %d bytes", int64(MaxUploadBytes)))
			return
		}
		s.log.Error("store run file", "object", obj, "err", err)
		lbhttp.WriteError(w, s.log, errs.New(errs.Unavailable, "unavailable", "could not store the file; retry later"))
		return
	}
	lbhttp.WriteJSON(w, http.StatusOK, map[string]any{})
}
