package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/logbook/logbook/bus"
	"github.com/logbook/logbook/events"
	"github.com/logbook/logbook/internal/httpx"
	"github.com/logbook/logbook/policy"
)

// registerAccess adds the key, service-account and audit routes.
func (h *Edge) registerAccess(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/users/{username}/keys", h.handle(h.listKeys))
	mux.HandleFunc("POST /api/v1/teams/{team}/service-accounts", h.handle(h.createServiceAccount))
	mux.HandleFunc("GET /api/v1/projects/{entity}/{project}/audit", h.handle(h.audit))
}

// listKeys lists a user's active keys: id, name and creation time, never
// the key or its hash.
func (h *Edge) listKeys(c *call) (int, any, error) {
	user := c.r.PathValue("username")
	if err := events.ValidateEntity(user); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	var out []policy.KeyInfo
	allowed := false
	h.Decider.View(func(s *policy.State) {
		u := s.Users[user]
		if u == nil || !policy.Allowed(s.RoleOn(c.actor, policy.ScopeUser, user), policy.ManageKeys) {
			return
		}
		allowed = true
		for _, k := range u.KeyInfo {
			out = append(out, k)
		}
	})
	if !allowed {
		return 0, nil, httpx.Errorf(404, string(policy.CodeUnknownUser), "user %q does not exist or you may not manage their keys", user)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID
	})
	if out == nil {
		out = []policy.KeyInfo{}
	}
	return 200, out, nil
}

// createServiceAccount creates a service account owned by a team and its
// first API key (shown once). A team admin may do it.
func (h *Edge) createServiceAccount(c *call) (int, any, error) {
	team := c.r.PathValue("team")
	if err := events.ValidateEntity(team); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	var body struct {
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		KeyName     string `json:"key_name"`
	}
	if err := httpx.ReadJSON(c.w, c.r, 64<<10, &body); err != nil {
		return 0, nil, err
	}
	if err := events.ValidateEntity(body.Username); err != nil {
		return 0, nil, httpx.Errorf(400, "invalid", "%v", err)
	}
	if _, err := h.propose(c, events.Event{Entity: body.Username,
		Payload: events.UserCreatedV1{Username: body.Username, DisplayName: body.DisplayName, Service: true, Owner: team}}); err != nil {
		return 0, nil, err
	}
	if body.KeyName == "" {
		body.KeyName = "default"
	}
	key := NewAPIKey()
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

// AuditEntry is one accepted or rejected action on a project, read from the
// log. Time is when the server stored it; Actor is the verified caller.
type AuditEntry struct {
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Type     events.Type     `json:"type"`
	Run      string          `json:"run,omitempty"`
	Accepted bool            `json:"accepted"`
	Code     policy.Code     `json:"code,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	Seq      uint64          `json:"seq,omitempty"` // events stream sequence of an accepted event
}

// Audit limits.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// auditSkipped are data events, not actions: the audit trail leaves them
// out (their rejections are listed).
var auditSkipped = map[events.Type]bool{events.MetricsLogged: true, events.RunLinesWritten: true, events.RunHeartbeatRecorded: true}

// audit answers a project's audit trail, newest first: accepted events
// (lb.ev.<e>.<p>.<type>, data events left out) and rejections
// (lb.rej.<e>.<p>) since the project was (last) created. ?limit= bounds
// the page, ?before=<time> (RFC 3339, the time of the last entry seen)
// pages back. A non-member gets 404 project_not_found, a member who is not
// an Admin 403 forbidden.
func (h *Edge) audit(c *call) (int, any, error) {
	entity, project, _, err := names(c.r)
	if err != nil {
		return 0, nil, err
	}
	q := c.r.URL.Query()
	limit := DefaultAuditLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 || limit > MaxAuditLimit {
			return 0, nil, httpx.Errorf(400, "invalid", "limit must be an integer from 1 to %d", MaxAuditLimit)
		}
	}
	before := time.Now().Add(time.Hour)
	if v := q.Get("before"); v != "" {
		if before, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return 0, nil, httpx.Errorf(400, "invalid", "before must be an RFC 3339 time, not %q", v)
		}
	}
	var role events.Role
	var exists bool
	h.Decider.View(func(s *policy.State) {
		p, ok := s.Project(entity, project)
		exists, role = ok, s.Role(c.actor.Username, p)
	})
	if !exists || role == "" {
		return 0, nil, RejectionError(&policy.Rejection{Code: policy.CodeProjectNotFound,
			Message: fmt.Sprintf("project %s/%s does not exist or you are not a member of it", entity, project)})
	}
	if !policy.Allowed(role, policy.ReadAuditTrail) {
		return 0, nil, httpx.Errorf(403, string(policy.CodeForbidden), "a %s may not %s", role, policy.ReadAuditTrail)
	}
	entries, err := ReadAudit(c.r.Context(), h.Decider.js, h.Decider.subj, entity, project)
	if err != nil {
		return 0, nil, err
	}
	out := make([]AuditEntry, 0, limit)
	for i := len(entries) - 1; i >= 0 && len(out) < limit; i-- {
		if entries[i].Time.Before(before) {
			out = append(out, entries[i])
		}
	}
	return 200, out, nil
}

// ReadAudit reads a project's audit trail from the log, oldest first, since
// its latest project_created event (a deleted and re-created project does
// not show its predecessor's trail).
func ReadAudit(ctx context.Context, js jetstream.JetStream, subj events.Subjects, entity, project string) ([]AuditEntry, error) {
	var filters []string
	for _, t := range events.Types() {
		if !auditSkipped[t] {
			filters = append(filters, subj.Event(events.Event{Entity: entity, Project: project, Type: t}))
		}
	}
	sort.Strings(filters)
	var out []AuditEntry
	var created time.Time
	err := readStream(ctx, js, bus.EventsStream, filters, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		e, err := events.Decode(m.Data())
		if err != nil {
			return fmt.Errorf("audit: decode seq %d: %w", md.Sequence.Stream, err)
		}
		if e.Type == events.ProjectCreated {
			out, created = out[:0], md.Timestamp
		}
		details, _ := json.Marshal(e.Payload)
		out = append(out, AuditEntry{Time: md.Timestamp.UTC(), Actor: e.Actor, Type: e.Type, Run: e.Run, Accepted: true,
			Details: details, Seq: md.Sequence.Stream})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rejected []AuditEntry
	err = readStream(ctx, js, bus.RejectionsStream, []string{subj.Rejection(entity, project)}, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		if md.Timestamp.Before(created) {
			return nil
		}
		var r RejectionRecord
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return nil // not ours to judge: skip what cannot be read
		}
		en := AuditEntry{Time: md.Timestamp.UTC(), Actor: r.Actor, Accepted: false, Code: r.Code, Reason: r.Message}
		if p, err := events.Decode(r.Proposal); err == nil {
			en.Type, en.Run = p.Type, p.Run
			if !auditSkipped[p.Type] {
				en.Details, _ = json.Marshal(p.Payload)
			}
		}
		rejected = append(rejected, en)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out = append(out, rejected...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// readStream delivers the messages present now on a stream's subjects.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, filters []string, fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", stream, err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = js.DeleteConsumer(dctx, stream, info.Name)
		}
	}()
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", stream, err)
	}
	pending := info.NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := fn(m, md); err != nil {
				return err
			}
			pending, n = md.NumPending, n+1
		}
		if n == 0 {
			if err := batch.Error(); err != nil {
				return fmt.Errorf("audit: read %s: %w", stream, err)
			}
			return fmt.Errorf("audit: read %s: no messages within 5s", stream)
		}
	}
	return nil
}

// Default per-key limits: a client batches its metrics, so even a busy
// training job makes a few requests a second.
const (
	DefaultKeyRate  = 100 // requests per second, on average
	DefaultKeyBurst = 200
)

// KeyLimiter is a per-API-key rate limit (a token bucket per key hash).
type KeyLimiter struct {
	Rate  rate.Limit
	Burst int

	mu   sync.Mutex
	keys map[string]*limiterEntry
	ops  int
}

type limiterEntry struct {
	l    *rate.Limiter
	used time.Time
}

// NewKeyLimiter allows each key perSecond requests per second on average,
// and bursts of burst.
func NewKeyLimiter(perSecond float64, burst int) *KeyLimiter {
	return &KeyLimiter{Rate: rate.Limit(perSecond), Burst: burst, keys: map[string]*limiterEntry{}}
}

// Allow reports whether the key (identified by its hash) may make a request
// now; if not, it says how long to wait.
func (k *KeyLimiter) Allow(keyHash string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.keys[keyHash]
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(k.Rate, k.Burst)}
		k.keys[keyHash] = e
	}
	e.used = now
	if k.ops++; k.ops%10000 == 0 {
		for h, v := range k.keys { // forget keys idle for long enough to have a full bucket
			if now.Sub(v.used) > 10*time.Minute {
				delete(k.keys, h)
			}
		}
	}
	r := e.l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// RateLimitError is the 429 answer of a refused request.
func RateLimitError(wait time.Duration) *httpx.Error {
	return httpx.Errorf(http.StatusTooManyRequests, "rate_limited", "too many requests with this API key; retry in %s", wait.Round(time.Millisecond))
}
