// Package wandb is Logbook's W&B adapter: it serves the subset of the W&B
// server protocol that the W&B clients (the JavaScript SDK @wandb/sdk and the
// Python SDK through wandb-core) use for init, log and finish, so training
// code written for W&B logs to Logbook by setting WANDB_BASE_URL and
// WANDB_API_KEY.
//
// Every request becomes proposals decided by the same policy as Logbook's
// own API (through ingest); reads go through the read service. The adapter
// never writes the events stream itself.
//
// Endpoints (see the README section "Use it from W&B code"):
//
//	POST /graphql                                   Viewer, UpsertBucket, RunResumeStatus, CreateRunFiles, ...
//	POST /files/{entity}/{project}/{run}/file_stream history, summary, console output, system metrics, finish
//	PUT  /files-upload/{entity}/{project}/{run}/{file...}?expires=&sig=  run files (signed URL, no API key)
//	POST /sdk/otel/v1/metrics                       404: no telemetry collection
package wandb

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// DefaultProject is the project of runs whose client names none (W&B's).
const DefaultProject = "uncategorized"

// Writer is the write side as the adapter uses it (*ingest.Service).
type Writer interface {
	Ready() <-chan struct{}
	Authenticate(key string) (*policy.User, error)
	Submit(ctx context.Context, p events.Event, mode ingest.Mode) (ingest.Outcome, error)
	Check(p events.Event) policy.Decision
	LogRows(ctx context.Context, actor, id, entity, project, run string, rows events.MetricsLoggedV2) (ingest.Outcome, error)
	Heartbeat(ctx context.Context, actor, id, entity, project, run string) (ingest.Outcome, error)
	Run(entity, project, run string) ingest.RunInfo
	Teams(user string) []string
	// KeyRef names the active key with this hash; KeyActive reports
	// whether it is still active (upload URLs die with their key).
	KeyRef(hash string) (user, keyID string, ok bool)
	KeyActive(user, keyID string) bool
	// View calls fn with the policy state, read-locked (artifact lookups).
	View(fn func(*policy.State))
}

// Server serves the W&B protocol.
type Server struct {
	in     Writer
	reader query.Reader
	log    *slog.Logger
	files  FileStore

	// ProjectQuota bounds the bytes of run files stored per project
	// (DefaultProjectQuota if zero).
	ProjectQuota int64

	// Limits, when set, rate-limits requests per API key like the native
	// API (429 rate_limited with Retry-After, which W&B clients honour).
	// The all-in-one and ingest share one limiter between both APIs.
	Limits *lbhttp.KeyLimiter
	arts   ArtifactStore
}

// New returns the adapter over the write side in, the read service r and
// the run file store files.
func New(in Writer, r query.Reader, files FileStore, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{in: in, reader: r, log: log, files: files}
}

// Register adds the routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /graphql", s.graphql)
	mux.HandleFunc("POST /files/{entity}/{project}/{run}/file_stream", s.fileStream)
	mux.HandleFunc("PUT /files-upload/{entity}/{project}/{run}/{file...}", s.upload)
	s.registerArtifacts(mux)
	mux.HandleFunc("/sdk/otel/", func(w http.ResponseWriter, r *http.Request) {
		// wandb-core probes this; 404 switches its telemetry export off.
		lbhttp.WriteError(w, nil, errs.New(errs.NotFound, "not_found", "Logbook does not collect W&B client telemetry"))
	})
}

// caller is an authenticated W&B client.
type caller struct {
	user    *policy.User
	keyHash string
}

// authenticate reads W&B's "Authorization: Basic base64(api:<key>)".
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	select {
	case <-s.in.Ready():
	default:
		return nil, errs.New(errs.Unavailable, "starting", "Logbook is starting; retry in a moment")
	}
	key, ok := lbhttp.APIKey(r)
	if !ok {
		return nil, errs.New(errs.Unauthenticated, "unauthenticated", "no API key: set WANDB_API_KEY to a Logbook API key")
	}
	u, err := s.in.Authenticate(key)
	if err != nil {
		return nil, errs.New(errs.Unauthenticated, "unauthenticated", "invalid or revoked API key: set WANDB_API_KEY to an active Logbook API key")
	}
	hash := policy.HashKey(key)
	if err := s.Limits.Check(hash); err != nil {
		return nil, err
	}
	return &caller{user: u, keyHash: hash}, nil
}

// propose sends a proposal on behalf of c. With wait it returns the
// decision; without, an accepted proposal is queued (ingest.Queue). A
// refusal is returned as rej; err is for failures of Logbook itself.
func (s *Server) propose(ctx context.Context, c *caller, p events.Event, wait bool) (out ingest.Outcome, rej *policy.Rejection, err error) {
	p.Actor = c.user.Username
	mode := ingest.Wait
	if !wait {
		mode = ingest.Queue
	}
	out, err = s.in.Submit(ctx, p, mode)
	if out.Rejection != nil {
		return out, out.Rejection, nil
	}
	return out, nil, err
}

// check decides p against the current policy state without proposing it:
// whether c may do it.
func (s *Server) check(c *caller, p events.Event) *policy.Rejection {
	p.ID = events.NewID(time.Now())
	p.Actor = c.user.Username
	p.Time = time.Now().UTC()
	return s.in.Check(p).Rejection
}

// readRun reads a run through the read service, once it has applied minSeq.
func (s *Server) readRun(ctx context.Context, c *caller, entity, project, run string, minSeq uint64) (query.RunView, error) {
	var v query.RunView
	data, err := s.reader.Read(ctx, query.Request{KeyHash: c.keyHash, Op: query.OpRun, Entity: entity, Project: project, Run: run, MinSeq: minSeq})
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(data, &v)
	return v, err
}

// lastRow reads the last history row of a run.
func (s *Server) lastRow(ctx context.Context, c *caller, v query.RunView) (*query.Row, error) {
	if v.LastStep < 0 {
		return nil, nil
	}
	data, err := s.reader.Read(ctx, query.Request{KeyHash: c.keyHash, Op: query.OpHistory, Entity: v.Entity, Project: v.Project,
		Run: v.ID, MinStep: v.LastStep, MaxStep: v.LastStep, Limit: 1})
	if err != nil {
		return nil, err
	}
	var rows []query.Row
	if err := json.Unmarshal(data, &rows); err != nil || len(rows) == 0 {
		return nil, err
	}
	return &rows[0], nil
}

// newRunID returns a W&B style run id: 8 characters of [a-z0-9].
func newRunID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// statusOf maps an error of Logbook itself (not a refusal) for the log and
// the client: coded errors keep their status, the rest is internal.
func statusOf(err error) (int, string) {
	if e, ok := errs.As(err); ok {
		return lbhttp.Status(e.Kind), e.Message
	}
	return 500, "internal error; see the Logbook server log"
}
