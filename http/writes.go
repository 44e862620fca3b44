package http

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
)

// Writes is the HTTP write API: it authenticates callers by API key, turns
// requests into proposals for ingest and reports decisions.
type Writes struct {
	Ingest *ingest.Service
	Log    *slog.Logger
	// Limits, when set, rate-limits requests per API key (429 rate_limited).
	Limits *KeyLimiter
}

// Register adds the write routes to mux.
func (h *Writes) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/users/{username}/keys", h.handle(h.listKeys))
	mux.HandleFunc("POST /api/v1/teams/{team}/service-accounts", h.handle(h.createServiceAccount))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/audit", h.handle(h.audit))
	mux.HandleFunc("GET /api/v1/users/{username}/audit", h.handle(h.entityAudit(ingest.AuditUser, "username")))
	mux.HandleFunc("GET /api/v1/teams/{team}/audit", h.handle(h.entityAudit(ingest.AuditTeam, "team")))
	mux.HandleFunc("GET /api/v1/audit", h.handle(h.entityAudit(ingest.AuditSite, "")))
	mux.HandleFunc("POST /api/v1/users", h.handle(h.createUser))
	mux.HandleFunc("POST /api/v1/users/{username}/keys", h.handle(h.createKey))
	mux.HandleFunc("DELETE /api/v1/users/{username}/keys/{key}", h.handle(h.revokeKey))
	mux.HandleFunc("POST /api/v1/teams", h.handle(h.createTeam))
	mux.HandleFunc("POST /api/v1/log/quarantine", h.handle(h.quarantine))
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
	mux.HandleFunc("DELETE /api/v1/projects/{entity}/{project}/artifacts/{artifact}", h.handle(h.deleteArtifact))
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

func (h *Writes) handle(fn handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, keyHash, err := authenticate(h.Ingest, r)
		if err == nil {
			err = h.Limits.Check(keyHash)
		}
		id := r.Header.Get("Idempotency-Key")
		if err == nil && id != "" {
			if _, perr := ulid.ParseStrict(id); perr != nil {
				err = errs.E(errs.Invalid, "Idempotency-Key must be a ULID (26 characters), not %q", id)
			}
		} else if id == "" {
			id = events.NewID(time.Now())
		}
		if err != nil {
			WriteError(w, h.Log, err)
			return
		}
		status, body, err := fn(&call{w: w, r: r, actor: actor, id: id})
		if err != nil {
			WriteError(w, h.Log, err)
			return
		}
		WriteJSON(w, status, body)
	}
}

// authenticate resolves the request's API key to a user, and returns the
// key's hash (what rate limits and reads are keyed by).
func authenticate(in *ingest.Service, r *http.Request) (*policy.User, string, error) {
	key, ok := APIKey(r)
	if !ok {
		return nil, "", errs.E(errs.Unauthenticated, "send your API key as 'Authorization: Bearer <key>'")
	}
	u, err := in.Authenticate(key)
	return u, policy.HashKey(key), err
}

// propose submits a proposal on behalf of the caller and waits for its
// decision.
func (h *Writes) propose(c *call, e events.Event) (ingest.Outcome, error) {
	e.ID, e.Actor = c.id, c.actor.Username
	return h.Ingest.Submit(c.r.Context(), e, ingest.Wait)
}

// names validates the entity, project (and run) path values: they become
// subject tokens.
func names(r *http.Request) (entity, project, run string, err error) {
	entity, project, run = r.PathValue("entity"), r.PathValue("project"), r.PathValue("run")
	if err := events.ValidateEntity(entity); err != nil {
		return "", "", "", errs.E(errs.Invalid, "%v", err)
	}
	if err := events.ValidateProject(project); err != nil {
		return "", "", "", errs.E(errs.Invalid, "%v", err)
	}
	if run != "" {
		if err := events.ValidateRunID(run); err != nil {
			return "", "", "", errs.E(errs.Invalid, "%v", err)
		}
	}
	return entity, project, run, nil
}

func (h *Writes) createUser(c *call) (int, any, error) {
	var body events.UserCreatedV1
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Username); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	body.SiteAdmin = false // site admins are made at installation only
	if _, err := h.propose(c, events.Event{Entity: body.Username, Payload: body}); err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"username": body.Username, "email": body.Email, "display_name": body.DisplayName}, nil
}

func (h *Writes) createKey(c *call) (int, any, error) {
	var body struct {
		Name string `json:"name"`
	}
	if c.r.ContentLength != 0 {
		if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
			return 0, nil, err
		}
	}
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	key := ingest.NewAPIKey()
	keyID := strings.ToLower(c.id[len(c.id)-10:])
	if _, err := h.propose(c, events.Event{Entity: user, Payload: events.KeyCreatedV1{Username: user, KeyID: keyID, Name: body.Name, Hash: policy.HashKey(key)}}); err != nil {
		return 0, nil, err
	}
	return 201, map[string]string{"key_id": keyID, "name": body.Name, "key": key,
		"note": "this key is shown once; Logbook stores only its hash"}, nil
}

func (h *Writes) revokeKey(c *call) (int, any, error) {
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: user, Payload: events.KeyRevokedV1{Username: user, KeyID: c.r.PathValue("key")}}); err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"revoked": c.r.PathValue("key")}, nil
}

// quarantine proposes that the event at one stream sequence of the log,
// which cannot be read, be skipped for good (site admin; recorded on the
// admin's own entity, so the site audit shows it).
func (h *Writes) quarantine(c *call) (int, any, error) {
	var body events.EventQuarantinedV1
	if err := ReadJSON(c.w, c.r, 16<<10, &body); err != nil {
		return 0, nil, err
	}
	out, err := h.propose(c, events.Event{Entity: c.actor.Username, Payload: body})
	if err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"seq": body.Seq, "reason": body.Reason, "decision_seq": out.Seq}, nil
}

func (h *Writes) createTeam(c *call) (int, any, error) {
	var body events.TeamCreatedV1
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Name); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: body.Name, Payload: body}); err != nil {
		return 0, nil, err
	}
	return 201, body, nil
}

func (h *Writes) addTeamMember(c *call) (int, any, error) {
	team := c.r.PathValue("team")
	if err := events.ValidateEntity(team); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	var body events.TeamMemberJoinedV1
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
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

func (h *Writes) createProject(c *call) (int, any, error) {
	var body struct {
		Entity      string `json:"entity"`
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if body.Entity == "" {
		body.Entity = c.actor.Username
	}
	if err := events.ValidateEntity(body.Entity); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	if err := events.ValidateProject(body.Name); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	out, err := h.propose(c, events.Event{Entity: body.Entity, Project: body.Name,
		Payload: events.ProjectCreatedV1{Name: body.Name, Description: body.Description}})
	if err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"entity": body.Entity, "name": body.Name, "seq": out.Seq}, nil
}

func (h *Writes) projectOp(c *call, pl events.Payload) (int, any, error) {
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

func (h *Writes) deleteProject(c *call) (int, any, error) {
	return h.projectOp(c, events.ProjectDeletedV1{})
}

func (h *Writes) invite(c *call) (int, any, error) {
	var body events.MemberInvitedV1
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Writes) changeRole(c *call) (int, any, error) {
	var body struct {
		Role events.Role `json:"role"`
	}
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, events.RoleChangedV1{Username: c.r.PathValue("username"), Role: body.Role})
}

func (h *Writes) removeMember(c *call) (int, any, error) {
	return h.projectOp(c, events.MemberRemovedV1{Username: c.r.PathValue("username")})
}

func (h *Writes) revokeInvite(c *call) (int, any, error) {
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

func (h *Writes) startRun(c *call) (int, any, error) {
	var body StartRunRequest
	if err := ReadJSON(c.w, c.r, MaxBody, &body); err != nil {
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

func (h *Writes) updateRun(c *call) (int, any, error) {
	var body events.RunUpdatedV1
	if err := ReadJSON(c.w, c.r, MaxBody, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Writes) deleteRun(c *call) (int, any, error) {
	return h.projectOp(c, events.RunDeletedV1{})
}

// deleteArtifact soft-deletes an artifact version (by id); ?force=true
// also removes the aliases it holds. Its bytes are reclaimed by garbage
// collection (POST /api/v1/artifacts/gc).
func (h *Writes) deleteArtifact(c *call) (int, any, error) {
	return h.projectOp(c, events.ArtifactDeletedV1{ArtifactID: c.r.PathValue("artifact"), Force: c.r.URL.Query().Get("force") == "true"})
}

func (h *Writes) updateSummary(c *call) (int, any, error) {
	var body events.SummaryUpdatedV1
	if err := ReadJSON(c.w, c.r, MaxBody, &body); err != nil {
		return 0, nil, err
	}
	return h.projectOp(c, body)
}

func (h *Writes) finishRun(c *call) (int, any, error) {
	var body events.RunFinishedV1
	if c.r.ContentLength != 0 {
		if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
			return 0, nil, err
		}
	}
	return h.projectOp(c, body)
}

// logMetrics is the hot path: the proposal is checked against the current
// policy state and queued; the decider appends it asynchronously. Only a
// proposal that the check rejects is waited for, so its rejection is both
// recorded in the log and returned.
func (h *Writes) logMetrics(c *call) (int, any, error) {
	entity, project, run, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	rows, err := readRows(c)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.Ingest.LogRows(c.r.Context(), c.actor.Username, c.id, entity, project, run, rows)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, out, nil
}

// readRows reads a log request's body into columns, parsing it once:
// either the JSON body {"rows": [...]} (read straight into columns; what
// the fast path does not take, encoding/json reads), or the binary columns
// (Content-Type events.ColumnsMediaType) as the Go client sends them,
// checked for structure and passed on without parsing a value. Either way
// a row without a wall time (0) gets the time it arrived.
func readRows(c *call) (events.MetricsLoggedV2, error) {
	data, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return events.MetricsLoggedV2{}, TooLarge(MaxBody)
	}
	if err != nil {
		return events.MetricsLoggedV2{}, errs.New(errs.Invalid, "invalid_json", "cannot read request body: %v", err)
	}
	now := float64(time.Now().UnixMicro()) / 1e6 // a row without a wall time was logged now
	if mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type")); mt == events.ColumnsMediaType {
		m, err := events.ParseBody(data)
		if err != nil {
			return m, errs.New(errs.Invalid, "invalid_columns", "%v", err)
		}
		m.FillTimes(now)
		return m, nil
	}
	if err := events.CheckJSONText(data); err != nil {
		return events.MetricsLoggedV2{}, errs.New(errs.Invalid, "invalid_utf8", "%v", err)
	}
	m, ok, err := events.ParseRowsBody(data, now)
	if !ok {
		var body events.MetricsLoggedV1
		if err := DecodeJSON(data, &body); err != nil {
			return m, err
		}
		for i := range body.Rows {
			if body.Rows[i].Time == 0 {
				body.Rows[i].Time = now
			}
		}
		m, err = events.FromRows(body.Rows)
	}
	if err != nil {
		// What the columns cannot hold (steps that do not increase) is
		// refused here, as the policy refuses an invalid batch.
		return m, errs.New(errs.Invalid, string(policy.CodeInvalid), "%v", err)
	}
	return m, nil
}

func (h *Writes) heartbeat(c *call) (int, any, error) {
	entity, project, run, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.Ingest.Heartbeat(c.r.Context(), c.actor.Username, c.id, entity, project, run)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// listKeys lists a user's active keys: id, name and creation time, never
// the key or its hash.
func (h *Writes) listKeys(c *call) (int, any, error) {
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	out, err := h.Ingest.Keys(c.actor, user)
	return 200, out, err
}

// createServiceAccount creates a service account owned by a team and its
// first API key (shown once). A team admin may do it.
func (h *Writes) createServiceAccount(c *call) (int, any, error) {
	team := c.r.PathValue("team")
	if err := events.ValidateEntity(team); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	var body struct {
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		KeyName     string `json:"key_name"`
	}
	if err := ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Username); err != nil {
		return 0, nil, errs.E(errs.Invalid, "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: body.Username,
		Payload: events.UserCreatedV1{Username: body.Username, DisplayName: body.DisplayName, Service: true, Owner: team}}); err != nil {
		return 0, nil, err
	}
	if body.KeyName == "" {
		body.KeyName = "default"
	}
	key := ingest.NewAPIKey()
	c.id = events.NewID(time.Now())
	keyID := strings.ToLower(c.id[len(c.id)-10:])
	out, err := h.propose(c, events.Event{Entity: body.Username,
		Payload: events.KeyCreatedV1{Username: body.Username, KeyID: keyID, Name: body.KeyName, Hash: policy.HashKey(key)}})
	if err != nil {
		return 0, nil, err
	}
	return 201, map[string]any{"username": body.Username, "owner": team, "service": true, "key_id": keyID, "key": key,
		"seq": out.Seq, "note": "this key is shown once; Logbook stores only its hash. The account has no role on any project until invited."}, nil
}

// Audit limits.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// audit answers a project's audit trail, newest first: accepted events
// (data events left out) and rejections since the project was (last)
// created. ?limit= bounds the page, ?before=<time> (RFC 3339, the time of
// the last entry seen) pages back.
func (h *Writes) audit(c *call) (int, any, error) {
	entity, project, _, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	limit, before, err := auditPage(c.r)
	if err != nil {
		return 0, nil, err
	}
	out, err := h.Ingest.Audit(c.r.Context(), c.actor, entity, project, limit, before)
	return 200, out, err
}

// entityAudit answers the audit trail of a user or team (named by the path
// value param) or of the whole site: entity-level events and the refusals
// about them, newest first, paged like a project's.
func (h *Writes) entityAudit(kind, param string) handlerFunc {
	return func(c *call) (int, any, error) {
		name := ""
		if param != "" {
			name = c.r.PathValue(param)
			if err := events.ValidateEntity(name); err != nil {
				return 0, nil, errs.E(errs.Invalid, "%v", err)
			}
		}
		limit, before, err := auditPage(c.r)
		if err != nil {
			return 0, nil, err
		}
		out, err := h.Ingest.EntityAudit(c.r.Context(), c.actor, kind, name, limit, before)
		return 200, out, err
	}
}

// auditPage reads ?limit= and ?before= of an audit request.
func auditPage(r *http.Request) (limit int, before time.Time, err error) {
	q := r.URL.Query()
	limit = DefaultAuditLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 || limit > MaxAuditLimit {
			return 0, before, errs.E(errs.Invalid, "limit must be an integer from 1 to %d", MaxAuditLimit)
		}
	}
	before = time.Now().Add(time.Hour)
	if v := q.Get("before"); v != "" {
		if before, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return 0, before, errs.E(errs.Invalid, "before must be an RFC 3339 time, not %q", v)
		}
	}
	return limit, before, nil
}
