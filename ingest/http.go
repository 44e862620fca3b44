package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
)

// Edge is the HTTP write API: it authenticates callers by API key, turns
// requests into proposals and reports decisions.
type Edge struct {
	Decider  *Decider
	Proposer *Proposer
	Log      *slog.Logger
	// Limits, when set, rate-limits requests per API key (429 rate_limited).
	Limits *KeyLimiter
}

// Register adds the write routes to mux.
func (h *Edge) Register(mux *http.ServeMux) {
	h.registerAccess(mux)
	mux.HandleFunc("POST /api/v1/users", h.handle(h.createUser))
	mux.HandleFunc("POST /api/v1/users/{username}/keys", h.handle(h.createKey))
	mux.HandleFunc("DELETE /api/v1/users/{username}/keys/{key}", h.handle(h.revokeKey))
	mux.HandleFunc("POST /api/v1/teams", h.handle(h.createTeam))
	mux.HandleFunc("POST /api/v1/teams/{team}/members", h.handle(h.addTeamMember))
	mux.HandleFunc("POST /api/v1/projects", h.handle(h.createProject))
	mux.HandleFunc("DELETE /api/v1/projects/{entity}/{project}", h.handle(h.deleteProject))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/members", h.handle(h.invite))
	mux.HandleFunc("PATCH /api/v1/projects/{entity}/{project}/members/{username}", h.handle(h.changeRole))
	mux.HandleFunc("DELETE /api/v1/projects/{entity}/{project}/members/{username}", h.handle(h.removeMember))
	mux.HandleFunc("DELETE /api/v1/projects/{entity}/{project}/invites/{email}", h.handle(h.revokeInvite))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/runs", h.handle(h.startRun))
	mux.HandleFunc("PATCH /api/v1/projects/{entity}/{project}/runs/{run}", h.handle(h.updateRun))
	mux.HandleFunc("DELETE /api/v1/projects/{entity}/{project}/runs/{run}", h.handle(h.deleteRun))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/runs/{run}/log", h.handle(h.logMetrics))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/runs/{run}/summary", h.handle(h.updateSummary))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/runs/{run}/finish", h.handle(h.finishRun))
	mux.HandleFunc("POST /api/v1/projects/{entity}/{project}/runs/{run}/heartbeat", h.handle(h.heartbeat))
}

type call struct {
	w     http.ResponseWriter
	r     *http.Request
	actor *policy.User
	id    string // proposal id
}

type handlerFunc func(c *call) (status int, body any, err error)

func (h *Edge) handle(fn handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.Decider.Ready():
		default:
			httpx.WriteError(w, h.Log, httpx.Errorf(503, "starting", "Logbook is starting; retry in a moment"))
			return
		}
		actor, err := h.authenticate(r)
		if err != nil {
			httpx.WriteError(w, h.Log, err)
			return
		}
		if key, _ := httpx.APIKey(r); h.Limits != nil {
			if ok, wait := h.Limits.Allow(policy.HashKey(key), time.Now()); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
				httpx.WriteError(w, h.Log, RateLimitError(wait))
				return
			}
		}
		id := r.Header.Get("Idempotency-Key")
		if id != "" {
			if _, err := ulid.ParseStrict(id); err != nil {
				httpx.WriteError(w, h.Log, httpx.Errorf(400, "invalid", "Idempotency-Key must be a ULID (26 characters), not %q", id))
				return
			}
		} else {
			id = events.NewID(time.Now())
		}
		status, body, err := fn(&call{w: w, r: r, actor: actor, id: id})
		if err != nil {
			httpx.WriteError(w, h.Log, err)
			return
		}
		httpx.WriteJSON(w, status, body)
	}
}

// Authenticate resolves the request's API key to a user.
func (h *Edge) authenticate(r *http.Request) (*policy.User, error) {
	key, ok := httpx.APIKey(r)
	if !ok {
		return nil, httpx.Errorf(401, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'")
	}
	return h.Decider.Authenticate(key)
}

// Authenticate resolves an API key to its user.
func (d *Decider) Authenticate(key string) (*policy.User, error) {
	var u *policy.User
	d.View(func(s *policy.State) {
		if found, ok := s.UserByKeyHash(policy.HashKey(key)); ok {
			c := *found
			u = &c
		}
	})
	if u == nil {
		return nil, httpx.Errorf(401, "unauthenticated", "invalid or revoked API key")
	}
	return u, nil
}

// propose sends a proposal and waits for its decision, mapping a rejection
// to an HTTP error.
func (h *Edge) propose(c *call, e events.Event) (Outcome, error) {
	e.ID, e.Actor = c.id, c.actor.Username
	out, err := h.Proposer.Propose(c.r.Context(), e, true)
	if err != nil {
		if errors.Is(err, ErrUndecided) {
			return out, httpx.Errorf(503, "undecided", "%v", err)
		}
		return out, err
	}
	if out.Rejection != nil {
		return out, RejectionError(out.Rejection)
	}
	return out, nil
}

// RejectionError maps a policy rejection to an HTTP error.
func RejectionError(r *policy.Rejection) *httpx.Error {
	return httpx.Errorf(StatusOf(r.Code), string(r.Code), "%s", r.Message)
}

// StatusOf maps a rejection code to an HTTP status.
func StatusOf(c policy.Code) int {
	switch c {
	case policy.CodeUnauthenticated:
		return 401
	case policy.CodeForbidden, policy.CodeRunNotYours:
		return 403
	case policy.CodeProjectNotFound, policy.CodeRunNotFound, policy.CodeUnknownUser, policy.CodeUnknownEntity,
		policy.CodeInviteNotFound, policy.CodeKeyNotFound:
		return 404
	case policy.CodeEntityExists, policy.CodeEmailTaken, policy.CodeProjectExists, policy.CodeAlreadyMember,
		policy.CodeNotMember, policy.CodeLastAdmin, policy.CodeRunExists, policy.CodeRunFinished:
		return 409
	}
	return 400
}

// names validates the entity, project (and run) path values: they become
// subject tokens.
func names(r *http.Request) (entity, project, run string, err error) {
	entity, project, run = r.PathValue("entity"), r.PathValue("project"), r.PathValue("run")
	if err := events.ValidateEntity(entity); err != nil {
		return "", "", "", httpx.Errorf(400, "invalid", "%v", err)
	}
	if err := events.ValidateProject(project); err != nil {
		return "", "", "", httpx.Errorf(400, "invalid", "%v", err)
	}
	if run != "" {
		if err := events.ValidateRunID(run); err != nil {
			return "", "", "", httpx.Errorf(400, "invalid", "%v", err)
		}
	}
	return entity, project, run, nil
}

func (h *Edge) createUser(c *call) (int, any, error) {
	var body events.UserCreatedV1
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Username); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	body.SiteAdmin = false // site admins are made at installation only
	if _, err := h.propose(c, events.Event{Entity: body.Username, Payload: body}); err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"username": body.Username, "email": body.Email, "display_name": body.DisplayName}, nil
}

// NewAPIKey returns a fresh API key: "lb-" and 48 hex characters (192 random
// bits), which W&B's clients accept (at least 40 characters after the
// prefix).
func NewAPIKey() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "lb-" + hex.EncodeToString(b)
}

// ValidateAPIKey checks a key handed in from outside (LOGBOOK_ADMIN_API_KEY):
// an optional "prefix-" and at least 40 characters of [A-Za-z0-9_-].
func ValidateAPIKey(key string) error {
	rest := key
	if _, after, ok := strings.Cut(key, "-"); ok {
		rest = after
	}
	if len(rest) < 40 {
		return fmt.Errorf("API key must have at least 40 characters after an optional 'prefix-' (W&B clients refuse shorter keys)")
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("API key may contain only letters, digits, '_' and '-'")
		}
	}
	return nil
}

func (h *Edge) createKey(c *call) (int, any, error) {
	var body struct {
		Name string `json:"name"`
	}
	if c.r.ContentLength != 0 {
		if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
			return 0, nil, err
		}
	}
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	key := NewAPIKey()
	keyID := strings.ToLower(c.id[len(c.id)-10:])
	if _, err := h.propose(c, events.Event{Entity: user, Payload: events.KeyCreatedV1{Username: user, KeyID: keyID, Name: body.Name, Hash: policy.HashKey(key)}}); err != nil {
		return 0, nil, err
	}
	return 201, map[string]string{"key_id": keyID, "name": body.Name, "key": key,
		"note": "this key is shown once; Logbook stores only its hash"}, nil
}

func (h *Edge) revokeKey(c *call) (int, any, error) {
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: user, Payload: events.KeyRevokedV1{Username: user, KeyID: c.r.PathValue("key")}}); err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"revoked": c.r.PathValue("key")}, nil
}

func (h *Edge) createTeam(c *call) (int, any, error) {
	var body events.TeamCreatedV1
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Name); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: body.Name, Payload: body}); err != nil {
		return 0, nil, err
	}
	return 201, body, nil
}

func (h *Edge) addTeamMember(c *call) (int, any, error) {
	team := c.r.PathValue("team")
	if err := events.ValidateEntity(team); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	var body events.TeamMemberJoinedV1
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if body.Role == "" {
		body.Role = events.TeamMember
	}
	if _, err := h.propose(c, events.Event{Entity: team, Payload: body}); err != nil {
		return 0, nil, err
	}
	return 201, body, nil
}

func (h *Edge) createProject(c *call) (int, any, error) {
	var body struct {
		Entity      string `json:"entity"`
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if body.Entity == "" {
		body.Entity = c.actor.Username
	}
	if err := events.ValidateEntity(body.Entity); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	if err := events.ValidateProject(body.Name); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	out, err := h.propose(c, events.Event{Entity: body.Entity, Project: body.Name,
		Payload: events.ProjectCreatedV1{Name: body.Name, Description: body.Description}})
	if err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"entity": body.Entity, "name": body.Name, "seq": out.Seq}, nil
}

func (h *Edge) projectOp(c *call, pl events.Payload) (int, any, error) {
	entity, project, run, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.propose(c, events.Event{Entity: entity, Project: project, Run: run, Payload: pl})
	if err != nil {
		return 0, nil, err
	}
	return 200, out, nil
}

func (h *Edge) deleteProject(c *call) (int, any, error) {
	return h.projectOp(c, events.ProjectDeletedV1{})
}

func (h *Edge) invite(c *call) (int, any, error) {
	var body events.MemberInvitedV1
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Edge) changeRole(c *call) (int, any, error) {
	var body struct {
		Role events.Role `json:"role"`
	}
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, events.RoleChangedV1{Username: c.r.PathValue("username"), Role: body.Role})
}

func (h *Edge) removeMember(c *call) (int, any, error) {
	return h.projectOp(c, events.MemberRemovedV1{Username: c.r.PathValue("username")})
}

func (h *Edge) revokeInvite(c *call) (int, any, error) {
	return h.projectOp(c, events.InviteRevokedV2{Email: c.r.PathValue("email")})
}

// StartRunRequest is the body of a run start.
type StartRunRequest struct {
	ID      string          `json:"id,omitempty"`
	Name    string          `json:"name,omitempty"`
	JobType string          `json:"job_type,omitempty"`
	Group   string          `json:"group,omitempty"`
	Notes   string          `json:"notes,omitempty"`
	Tags    []string        `json:"tags,omitempty"`
	Config  json.RawMessage `json:"config,omitempty"`
	Resume  string          `json:"resume,omitempty"`
}

func (h *Edge) startRun(c *call) (int, any, error) {
	var body StartRunRequest
	if err := httpx.ReadJSON(c.w, c.r, httpx.MaxBody, &body); err != nil {
		return 0, nil, err
	}
	if string(body.Config) == "null" {
		body.Config = nil
	}
	status, out, err := h.projectOp(c, events.RunStartedV1{RunID: body.ID, Name: body.Name, JobType: body.JobType,
		Group: body.Group, Notes: body.Notes, Tags: body.Tags, Config: body.Config, Resume: body.Resume})
	if err == nil {
		status = 201
	}
	return status, out, err
}

func (h *Edge) updateRun(c *call) (int, any, error) {
	var body events.RunUpdatedV1
	if err := httpx.ReadJSON(c.w, c.r, httpx.MaxBody, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Edge) deleteRun(c *call) (int, any, error) {
	return h.projectOp(c, events.RunDeletedV1{})
}

func (h *Edge) updateSummary(c *call) (int, any, error) {
	var body events.SummaryUpdatedV1
	if err := httpx.ReadJSON(c.w, c.r, httpx.MaxBody, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Edge) finishRun(c *call) (int, any, error) {
	var body events.RunFinishedV1
	if c.r.ContentLength != 0 {
		if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
			return 0, nil, err
		}
	}
	return h.projectOp(c, body)
}

// logMetrics is the hot path: the proposal is checked against the current
// policy state and queued; the decider appends it asynchronously. Only a
// proposal that the check rejects is waited for, so its rejection is both
// recorded in the log and returned.
func (h *Edge) logMetrics(c *call) (int, any, error) {
	entity, project, run, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	body, raw, err := readRows(c)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.logRows(c.r.Context(), c.actor.Username, c.id, entity, project, run, body.Rows, raw)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, out, nil
}

// readRows reads a log request's body, {"rows": [...]}, on the events
// package's fast path, and returns it also as raw bytes (to pass through
// into the proposal); a body outside the fast path (or a broken one) is
// read by httpx.ReadJSON, which reports what is wrong with it, and raw is
// nil.
func readRows(c *call) (_ events.MetricsLoggedV1, raw []byte, _ error) {
	data, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, httpx.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return events.MetricsLoggedV1{}, nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "too_large",
			"request body is larger than the %d-byte limit; send smaller batches", httpx.MaxBody)
	}
	if err == nil {
		if pl, ok := events.ParseMetricsPayload(data); ok {
			return pl, data, nil
		}
	}
	var body events.MetricsLoggedV1
	c.r.Body = io.NopCloser(bytes.NewReader(data))
	return body, nil, httpx.ReadJSON(c.w, c.r, httpx.MaxBody, &body)
}

// LogRows queues a batch of rows for a run on behalf of actor (also used by
// the W&B adapter).
func (h *Edge) LogRows(ctx context.Context, actor, id, entity, project, run string, rows []events.Row) (Outcome, error) {
	return h.logRows(ctx, actor, id, entity, project, run, rows, nil)
}

// logRows is LogRows; raw, when not nil, is the JSON of the rows' payload,
// passed through into the proposal unless a row's time is filled in here.
func (h *Edge) logRows(ctx context.Context, actor, id, entity, project, run string, rows []events.Row, raw []byte) (Outcome, error) {
	now := time.Now().UTC()
	for i := range rows {
		if rows[i].Time == 0 { // a row without a wall time was logged now
			rows[i].Time = float64(now.UnixMicro()) / 1e6
			raw = nil
		}
	}
	p := events.Event{ID: id, Actor: actor, Time: now, Entity: entity, Project: project, Run: run,
		Payload: events.MetricsLoggedV1{Rows: rows}}
	var dry policy.Decision
	h.Decider.View(func(s *policy.State) { dry = policy.Decide(s, p) })
	wait := dry.Rejection != nil
	var out Outcome
	var err error
	if raw != nil {
		out, err = h.Proposer.ProposeMetrics(ctx, p, raw, wait)
	} else {
		out, err = h.Proposer.Propose(ctx, p, wait)
	}
	if err != nil {
		if errors.Is(err, ErrUndecided) {
			return out, httpx.Errorf(503, "undecided", "%v", err)
		}
		return out, err
	}
	if out.Rejection != nil {
		return out, RejectionError(out.Rejection)
	}
	if !wait {
		out = Outcome{Accepted: true, Run: run, Dropped: dry.Dropped}
	}
	return out, nil
}
