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
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/logbook/logbook/app"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// DefaultProject is the project of runs whose client names none (W&B's).
const DefaultProject = "uncategorized"

// Server serves the W&B protocol.
type Server struct {
	in     *app.Ingest
	reader query.Reader
	log    *slog.Logger
	files  *fileStore
}

// Routes adds the W&B endpoints to mux, on top of the ingest side in and
// the read service r. It has the signature of app.AllInOneConfig.Routes.
func Routes(mux *http.ServeMux, in *app.Ingest, r query.Reader) {
	New(in, r).Register(mux)
}

// New returns the adapter.
func New(in *app.Ingest, r query.Reader) *Server {
	log := slog.New(slog.DiscardHandler)
	var fs *fileStore
	if in.Bus != nil {
		if in.Bus.Log != nil {
			log = in.Bus.Log.With("component", "wandb")
		}
		fs = &fileStore{js: in.Bus.JS, replicas: in.Bus.Config.Replicas, log: log}
	}
	return &Server{in: in, reader: r, log: log, files: fs}
}

// Register adds the routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /graphql", s.graphql)
	mux.HandleFunc("POST /files/{entity}/{project}/{run}/file_stream", s.fileStream)
	mux.HandleFunc("PUT /files-upload/{entity}/{project}/{run}/{file...}", s.upload)
	mux.HandleFunc("/sdk/otel/", func(w http.ResponseWriter, r *http.Request) {
		// wandb-core probes this; 404 switches its telemetry export off.
		httpx.WriteError(w, nil, httpx.Errorf(404, "not_found", "Logbook does not collect W&B client telemetry"))
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
	case <-s.in.Decider.Ready():
	default:
		return nil, httpx.Errorf(503, "starting", "Logbook is starting; retry in a moment")
	}
	key, ok := httpx.APIKey(r)
	if !ok {
		return nil, httpx.Errorf(401, "unauthenticated", "no API key: set WANDB_API_KEY to a Logbook API key")
	}
	u, err := s.in.Decider.Authenticate(key)
	if err != nil {
		return nil, httpx.Errorf(401, "unauthenticated", "invalid or revoked API key: set WANDB_API_KEY to an active Logbook API key")
	}
	return &caller{user: u, keyHash: policy.HashKey(key)}, nil
}

// propose sends a proposal on behalf of c. With wait it returns the
// decision. Without wait it first decides the proposal against the current
// policy state (a dry run) and waits only if that refuses it, so a refusal is
// both recorded in the log and returned; an accepted proposal is queued.
// A refusal is returned as rej; err is for failures of Logbook itself.
func (s *Server) propose(ctx context.Context, c *caller, p events.Event, wait bool) (out ingest.Outcome, rej *policy.Rejection, err error) {
	p.ID = events.NewID(time.Now())
	p.Actor = c.user.Username
	p.Time = time.Now().UTC()
	if !wait {
		var dry policy.Decision
		s.in.Decider.View(func(st *policy.State) { dry = policy.Decide(st, p) })
		wait = dry.Rejection != nil
	}
	out, err = s.in.Proposer.Propose(ctx, p, wait)
	if err != nil {
		return out, nil, err
	}
	return out, out.Rejection, nil
}

// check decides p against the current policy state without proposing it:
// whether c may do it.
func (s *Server) check(c *caller, p events.Event) *policy.Rejection {
	p.ID = events.NewID(time.Now())
	p.Actor = c.user.Username
	p.Time = time.Now().UTC()
	var dry policy.Decision
	s.in.Decider.View(func(st *policy.State) { dry = policy.Decide(st, p) })
	return dry.Rejection
}

// runState is what the policy knows about a run.
type runState struct {
	projectExists bool
	exists        bool
	state, owner  string
	seq           uint64 // the project's last applied stream sequence
}

func (s *Server) lookup(entity, project, run string) runState {
	var rs runState
	s.in.Decider.View(func(st *policy.State) {
		rs.seq = st.Seq(entity, project)
		p, ok := st.Project(entity, project)
		if !ok {
			return
		}
		rs.projectExists = true
		if r := p.Runs[run]; r != nil && !r.Deleted {
			rs.exists, rs.state, rs.owner = true, r.State, r.Owner
		}
	})
	return rs
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
// the client: known HTTP errors keep their status, the rest is internal.
func statusOf(err error) (int, string) {
	var he *httpx.Error
	var sc httpx.StatusCoder
	switch {
	case errors.As(err, &he):
		return he.Status, he.Message
	case errors.As(err, &sc):
		st, _ := sc.HTTPStatus()
		return st, sc.Error()
	case errors.Is(err, ingest.ErrUndecided):
		return 503, err.Error()
	}
	return 500, "internal error; see the Logbook server log"
}
