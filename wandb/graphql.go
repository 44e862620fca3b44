package wandb

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/ingest"
	"github.com/logbook/logbook/policy"
	"github.com/logbook/logbook/query"
)

// gqlRequest is a GraphQL request as both W&B clients send it.
type gqlRequest struct {
	Query         string          `json:"query"`
	Variables     vars            `json:"variables"`
	OperationName string          `json:"operationName"`
	Extensions    json.RawMessage `json:"extensions"`
}

// vars are GraphQL variables; a null variable is the same as a missing one.
type vars map[string]json.RawMessage

// str returns a string variable, and whether it was given (non-null).
func (v vars) str(name string) (string, bool, error) {
	raw, ok := v[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("variable $%s must be a string", name)
	}
	return s, true, nil
}

// strs returns a list-of-strings variable, and whether it was given.
func (v vars) strs(name string) ([]string, bool, error) {
	raw, ok := v[name]
	if !ok || string(raw) == "null" {
		return nil, false, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, false, fmt.Errorf("variable $%s must be a list of strings", name)
	}
	return s, true, nil
}

// gqlError is a GraphQL error: answered with HTTP 200, "data": null and the
// message, which the W&B clients show to the user.
type gqlError struct {
	Code    string
	Message string
}

func (e *gqlError) Error() string { return e.Message }

func gqlErrorf(code, format string, args ...any) *gqlError {
	return &gqlError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func refused(r *policy.Rejection) *gqlError {
	return &gqlError{Code: string(r.Code), Message: r.Message}
}

var opName = regexp.MustCompile(`^\s*(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)`)

// operation returns the operation's name: operationName, or the name of the
// first operation of the document.
func (q *gqlRequest) operation() string {
	if q.OperationName != "" {
		return q.OperationName
	}
	doc := q.Query
	// Skip comments and fragments before the first operation.
	for _, line := range strings.Split(doc, "\n") {
		if m := opName.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	if m := opName.FindStringSubmatch(strings.Join(strings.Fields(doc), " ")); m != nil {
		return m[1]
	}
	return ""
}

// MaxGraphQLBody bounds a GraphQL request (configs are at most 256 KiB).
const MaxGraphQLBody = 2 << 20

func (s *Server) graphql(w http.ResponseWriter, r *http.Request) {
	c, err := s.authenticate(r)
	if err != nil {
		// GraphQL's own error shape with the status: wandb-core shows
		// errors[0].message (the native shape reached users as "<no message>").
		e := lbhttp.Problem(s.log, err)
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())+1))
		}
		lbhttp.WriteJSON(w, lbhttp.Status(e.Kind), map[string]any{"errors": []any{
			map[string]any{"message": e.Message, "extensions": map[string]string{"code": e.Code}}}})
		return
	}
	var q gqlRequest
	if err := lbhttp.ReadJSON(w, r, MaxGraphQLBody, &q); err != nil {
		writeGQL(w, nil, gqlErrorf("invalid", "%s", err.Error()))
		return
	}
	op := q.operation()
	var data any
	switch op {
	case "Viewer":
		data, err = s.viewer(c, strings.Contains(q.Query, "serverInfo"))
	case "ServerInfo":
		data = map[string]any{"serverInfo": serverInfo()}
	case "ServerFeaturesQuery":
		data = map[string]any{"serverInfo": map[string]any{"features": []any{}}}
	case "OrganizationCoreWeaveOrganizationID":
		data = map[string]any{"entity": nil}
	case "UpsertBucket":
		data, err = s.upsertBucket(r.Context(), c, q.Variables)
	case "RunResumeStatus":
		data, err = s.runResumeStatus(r.Context(), c, q.Variables)
	case "RunStoppedStatus":
		data, err = s.runStoppedStatus(c, q.Variables)
	case "CreateRunFiles":
		data, err = s.createRunFiles(r, c, q.Variables)
	case "RunFiles":
		data, err = s.runFiles(r, c, q.Variables)
	case "RunUploadUrls":
		data, err = s.runUploadURLs(r, c, q.Variables)
	case "":
		err = gqlErrorf("invalid", "the request names no operation (send operationName)")
	default:
		var ok bool
		if data, err, ok = s.artifactOp(r, c, op, q.Variables); !ok {
			err = gqlErrorf("unsupported", "operation %s is not supported by Logbook", op)
		}
	}
	if err != nil {
		if _, ok := err.(*gqlError); !ok {
			st, msg := statusOf(err)
			if st >= 500 {
				// A failure of Logbook itself (storage full, unavailable):
				// a 5xx makes the W&B clients retry, where a GraphQL error
				// in a 200 would make them give up on the operation.
				s.log.Error("graphql", "op", op, "user", c.user.Username, "err", err)
				lbhttp.WriteError(w, s.log, err)
				return
			}
			err = gqlErrorf("internal", "%s", msg)
		} else {
			s.log.Debug("graphql refused", "op", op, "user", c.user.Username, "err", err)
		}
		writeGQL(w, nil, err.(*gqlError))
		return
	}
	writeGQL(w, data, nil)
}

func writeGQL(w http.ResponseWriter, data any, e *gqlError) {
	body := map[string]any{"data": data}
	if e != nil {
		body["errors"] = []any{map[string]any{"message": e.Message, "extensions": map[string]string{"code": e.Code}}}
	}
	lbhttp.WriteJSON(w, http.StatusOK, body)
}

func serverInfo() map[string]any {
	return map[string]any{"cliVersionInfo": map[string]any{}, "latestLocalVersionInfo": nil}
}

// gid is a GraphQL-style opaque id.
func gid(kind, name string) string {
	return base64.StdEncoding.EncodeToString([]byte(kind + ":" + name))
}

func (s *Server) viewer(c *caller, withServerInfo bool) (any, error) {
	teams := []any{}
	for _, n := range s.in.Teams(c.user.Username) {
		teams = append(teams, map[string]any{"node": map[string]any{"name": n}})
	}
	var email any
	if c.user.Email != "" {
		email = c.user.Email
	}
	out := map[string]any{"viewer": map[string]any{
		"id": gid("User", c.user.Username), "entity": c.user.Username, "username": c.user.Username,
		"email": email, "name": c.user.DisplayName, "admin": c.user.SiteAdmin, "flags": "{}",
		"teams": map[string]any{"edges": teams},
	}}
	if withServerInfo {
		out["serverInfo"] = serverInfo()
	}
	return out, nil
}

// Bucket ids: the run id, marked with where the client got it. wandb-core
// sends bucket.id back as $id in later UpsertBuckets of the same process:
// "s" (from an UpsertBucket) means "same session, just an update", "r" (from
// RunResumeStatus) means "the client resumes this run".
func bucketID(session, run string) string {
	return base64.StdEncoding.EncodeToString([]byte(session + ":" + run))
}

func bucketSession(id string) string {
	b, err := base64.StdEncoding.DecodeString(id)
	if err != nil {
		return ""
	}
	s, _, _ := strings.Cut(string(b), ":")
	return s
}

// names resolves and validates entity, project and run id of an operation.
func names(c *caller, entity, project, run string) (string, string, string, error) {
	if entity == "" {
		entity = c.user.Username
	}
	if project == "" {
		project = DefaultProject
	}
	if err := events.ValidateEntity(entity); err != nil {
		return "", "", "", gqlErrorf("invalid", "%v", err)
	}
	if err := events.ValidateProject(project); err != nil {
		return "", "", "", gqlErrorf("invalid", "%v", err)
	}
	if err := events.ValidateRunID(run); err != nil {
		return "", "", "", gqlErrorf("invalid", "%v", err)
	}
	return entity, project, run, nil
}

// upsertBucket creates a run (RunStarted) or updates it (RunUpdated; a null
// variable keeps the stored value). A finished run that a client initializes
// again is resumed first.
// bucket is an UpsertBucket's variables, checked.
type bucket struct {
	entity, project, runID, session         string
	cfg, wb                                 json.RawMessage
	displayName, notes, group, jobType      string
	hasName, hasNotes, hasGroup, hasJobType bool
	tags                                    []string
	hasTags                                 bool
	summary                                 string
	hasSummary                              bool
	hasHost                                 bool
}

// looksLikeInit reports whether an UpsertBucket carries more than a config:
// a client's first UpsertBucket sends its host (Python) or display name,
// job type, tags, notes or group; the later ones of the same process send
// only what changed, at finish typically the config alone.
func (b bucket) looksLikeInit() bool {
	return b.hasName || b.hasJobType || b.hasTags || b.hasNotes || b.hasGroup || b.hasHost
}

// parseBucket reads and checks an UpsertBucket's variables.
func parseBucket(c *caller, v vars) (b bucket, err error) {
	str := func(name string) (string, bool) {
		x, ok, _ := v.str(name)
		return x, ok
	}
	for _, n := range []string{"id", "name", "project", "entity", "groupName", "description", "displayName", "notes",
		"commit", "config", "host", "program", "repo", "jobType", "state", "sweep", "summaryMetrics"} {
		if _, _, err := v.str(n); err != nil {
			return b, gqlErrorf("invalid", "%v", err)
		}
	}
	if b.tags, b.hasTags, err = v.strs("tags"); err != nil {
		return b, gqlErrorf("invalid", "%v", err)
	}
	b.entity, _ = str("entity")
	b.project, _ = str("project")
	if b.runID, _ = str("name"); b.runID == "" {
		b.runID = newRunID()
	}
	if b.entity, b.project, b.runID, err = names(c, b.entity, b.project, b.runID); err != nil {
		return b, err
	}
	var sdk json.RawMessage
	if raw, ok := str("config"); ok {
		if b.cfg, sdk, err = splitConfig(raw); err != nil {
			return b, gqlErrorf("invalid", "%v", err)
		}
	}
	internals := map[string]any{}
	if len(sdk) > 0 {
		internals[sdkKey] = sdk
	}
	for _, n := range []string{"host", "program", "commit", "repo", "sweep"} {
		if x, ok := str(n); ok {
			internals[n] = x
		}
	}
	_, b.hasHost = str("host")
	if len(internals) > 0 {
		b.wb, _ = json.Marshal(internals)
	}
	b.displayName, b.hasName = str("displayName")
	b.hasName = b.hasName && b.displayName != ""
	if b.notes, b.hasNotes = str("notes"); !b.hasNotes {
		b.notes, b.hasNotes = str("description")
	}
	b.group, b.hasGroup = str("groupName")
	b.jobType, b.hasJobType = str("jobType")
	b.session = bucketSession(mustStr(str("id")))
	b.summary, b.hasSummary = str("summaryMetrics")
	return b, nil
}

func (s *Server) upsertBucket(ctx context.Context, c *caller, v vars) (any, error) {
	b, err := parseBucket(c, v)
	if err != nil {
		return nil, err
	}
	rs := s.in.Run(b.entity, b.project, b.runID)
	if !rs.ProjectExists {
		if err := s.createProject(ctx, c, b.entity, b.project); err != nil {
			return nil, err
		}
	}
	inserted := !rs.Exists
	if inserted {
		pl := events.RunStartedV1{RunID: b.runID, Name: b.displayName, JobType: b.jobType, Group: b.group, Notes: b.notes,
			Tags: b.tags, Config: b.cfg, Wandb: b.wb}
		err = s.proposeInit(ctx, c, events.Event{Entity: b.entity, Project: b.project, Run: b.runID, Payload: pl})
	} else {
		err = s.updateBucket(ctx, c, b, rs)
	}
	if err != nil {
		return nil, err
	}
	if b.hasSummary {
		if err := s.updateSummary(ctx, c, b.entity, b.project, b.runID, b.summary); err != nil {
			return nil, err
		}
	}
	run, err := s.readRun(ctx, c, b.entity, b.project, b.runID, s.in.Run(b.entity, b.project, b.runID).Seq)
	if err != nil {
		return nil, err
	}
	var description any
	if run.Notes != "" {
		description = run.Notes
	}
	return map[string]any{"upsertBucket": map[string]any{
		"inserted": inserted,
		"bucket": map[string]any{
			"id": bucketID("s", b.runID), "name": b.runID, "displayName": run.Name, "description": description,
			"config": wrapConfig(run.Config, sdkOf(run.Wandb)), "sweepName": nil, "historyLineCount": historyLines(run),
			"project": map[string]any{"id": gid("Project", b.entity+"/"+b.project), "name": b.project,
				"entity": map[string]any{"id": gid("Entity", b.entity), "name": b.entity}},
		},
	}}, nil
}

// createProject creates the project of a first run: W&B creates a project
// on the first run logged to it. The policy decides whether the caller may:
// in their own entity, or in a team they belong to.
func (s *Server) createProject(ctx context.Context, c *caller, entity, project string) error {
	_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project,
		Payload: events.ProjectCreatedV1{Name: project}}, true)
	if err != nil {
		return err
	}
	if rej != nil && rej.Code != policy.CodeProjectExists {
		return gqlErrorf(string(rej.Code), "project %s/%s does not exist and cannot be created: %s", entity, project, rej.Message)
	}
	return nil
}

// proposeInit proposes an event of a run's init and waits for it; a
// refusal is answered as W&B's clients expect it.
func (s *Server) proposeInit(ctx context.Context, c *caller, ev events.Event) error {
	_, rej, err := s.propose(ctx, c, ev, true)
	if err != nil {
		return err
	}
	if rej != nil {
		return s.initRefused(c, ev.Entity, ev.Project, rej)
	}
	return nil
}

// updateBucket applies an UpsertBucket to an existing run, then proposes
// what changed as one update.
//
// Only a client that resumes (its $id came from RunResumeStatus) makes a
// stopped run running again. A stopped run (finished, failed, killed) that
// a client initializes again without resuming is refused with a message
// saying so (defect 4: its new rows would be dropped while its summary was
// replaced). An upsert that only carries config (what wandb-core sends at
// finish, with $id null, from a run stopped through Logbook) is an update:
// it never resumes the run (defect 1).
func (s *Server) updateBucket(ctx context.Context, c *caller, b bucket, rs ingest.RunInfo) error {
	ev := events.Event{Entity: b.entity, Project: b.project, Run: b.runID}
	cfg := b.cfg
	stopped := rs.State != events.StateRunning && rs.State != events.StateCrashed
	switch {
	case b.session == "r" && rs.State != events.StateRunning:
		ev.Payload = events.RunStartedV1{RunID: b.runID, Resume: "allow", Config: cfg}
		if err := s.proposeInit(ctx, c, ev); err != nil {
			return err
		}
		cfg = nil
	case stopped && b.session == "" && b.looksLikeInit():
		return gqlErrorf(string(policy.CodeRunExists), "run id %q is already used by a %s run in %s/%s; resume it "+
			"(wandb.init(resume=\"allow\") or WANDB_RESUME=allow) or start a new run with another id", b.runID, rs.State, b.entity, b.project)
	}
	upd := events.RunUpdatedV1{Config: cfg, Wandb: b.wb}
	if b.hasName {
		upd.Name = &b.displayName
	}
	if b.hasJobType {
		upd.JobType = &b.jobType
	}
	if b.hasGroup {
		upd.Group = &b.group
	}
	if b.hasNotes {
		upd.Notes = &b.notes
	}
	if b.hasTags {
		cur, err := s.readRun(ctx, c, b.entity, b.project, b.runID, s.in.Run(b.entity, b.project, b.runID).Seq)
		if err != nil {
			return err
		}
		upd.AddTags, upd.RemoveTags = tagChanges(cur.Tags, b.tags)
	}
	ev.Payload = upd
	if upd.Name == nil && upd.JobType == nil && upd.Group == nil && upd.Notes == nil && len(upd.AddTags) == 0 &&
		len(upd.RemoveTags) == 0 && len(upd.Config) == 0 && len(upd.Wandb) == 0 {
		// Nothing changes; the caller must still be allowed to write.
		if rej := s.check(c, ev); rej != nil {
			return s.initRefused(c, b.entity, b.project, rej)
		}
		return nil
	}
	return s.proposeInit(ctx, c, ev)
}

// tagChanges is what turns tags cur into want.
func tagChanges(cur, want []string) (add, remove []string) {
	for _, t := range want {
		if !slices.Contains(cur, t) {
			add = append(add, t)
		}
	}
	for _, t := range cur {
		if !slices.Contains(want, t) {
			remove = append(remove, t)
		}
	}
	return add, remove
}

func mustStr(s string, _ bool) string { return s }

// initRefused explains a refused init in words that say what to do.
func (s *Server) initRefused(c *caller, entity, project string, rej *policy.Rejection) *gqlError {
	switch rej.Code {
	case policy.CodeForbidden:
		return gqlErrorf(string(rej.Code), "%s cannot start or change runs in %s/%s: %s (ask a project admin for the Member role)", c.user.Username, entity, project, rej.Message)
	case policy.CodeProjectNotFound:
		return gqlErrorf(string(rej.Code), "%s (ask a project admin to invite %s)", rej.Message, c.user.Username)
	}
	return refused(rej)
}

// sdkOf returns the "_wandb" part of a run's stored W&B internals.
func sdkOf(wb json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(wb, &m) != nil {
		return nil
	}
	return m[sdkKey]
}

// updateSummary proposes the numeric values of a W&B summary line.
func (s *Server) updateSummary(ctx context.Context, c *caller, entity, project, run, line string) error {
	m, err := parseLine(line)
	if err != nil {
		return gqlErrorf("invalid", "summaryMetrics: %v", err)
	}
	vals, _ := metrics(m)
	if len(vals) == 0 {
		return nil
	}
	_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project, Run: run,
		Payload: events.SummaryUpdatedV1{Values: vals}}, false)
	if err != nil {
		return err
	}
	if rej != nil {
		return refused(rej)
	}
	return nil
}

// runResumeStatus tells a resuming Python client what the run holds. A run
// counts as existing for the client only when its stored "_wandb" config
// has the telemetry key "t" (which Python clients write).
func (s *Server) runResumeStatus(ctx context.Context, c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entity")
	project, _, _ := v.str("project")
	name, _, err := v.str("name")
	if err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	entity, project, name, err = names(c, entity, project, name)
	if err != nil {
		return nil, err
	}
	model := map[string]any{"id": gid("Project", entity+"/"+project), "name": project,
		"entity": map[string]any{"id": gid("Entity", entity), "name": entity}, "bucket": nil}
	out := map[string]any{"model": model}
	rs := s.in.Run(entity, project, name)
	if !rs.Exists {
		return out, nil
	}
	run, err := s.readRun(ctx, c, entity, project, name, rs.Seq)
	if err != nil {
		if st, _ := statusOf(err); st == 404 {
			return out, nil // not visible to the caller: a new run for them
		}
		return nil, err
	}
	last, err := s.lastRow(ctx, c, run)
	if err != nil {
		return nil, err
	}
	start := float64(run.CreatedAt.UnixNano()) / 1e9
	tail := []string{}
	runtime := 0.0
	if last != nil {
		runtime = math.Max(0, last.Time-start)
		tail = append(tail, encodeLine(last.Values, map[string]float64{"_step": float64(last.Step), "_timestamp": last.Time, "_runtime": runtime}))
	}
	summaryExtra := map[string]float64{"_runtime": runtime}
	if run.LastStep >= 0 {
		summaryExtra["_step"] = float64(run.LastStep)
	}
	tailJSON, _ := json.Marshal(tail)
	wandbConfig := "{}"
	var sdk map[string]json.RawMessage
	if json.Unmarshal(sdkOf(run.Wandb), &sdk) == nil {
		if t, ok := sdk["t"]; ok {
			b, _ := json.Marshal(map[string]json.RawMessage{"t": t})
			wandbConfig = string(b)
		}
	}
	var notes any
	if run.Notes != "" {
		notes = run.Notes
	}
	model["bucket"] = map[string]any{
		"id": bucketID("r", name), "name": name, "displayName": run.Name,
		"config":           wrapConfig(run.Config, sdkOf(run.Wandb)),
		"summaryMetrics":   encodeLine(run.Summary, summaryExtra),
		"historyLineCount": historyLines(run),
		"eventsLineCount":  run.Lines[eventsFile],
		"logLineCount":     run.Lines[outputFile],
		"historyTail":      string(tailJSON),
		"eventsTail":       "[]",
		"tags":             run.Tags,
		"notes":            notes,
		"wandbConfig":      wandbConfig,
	}
	return out, nil
}

// historyLines is where a client continues the run's history stream: after
// the last line that arrived (lines lost in a gap included), or after the
// rows of a run written by other clients.
func historyLines(run query.RunView) int64 {
	return max(run.Rows, run.HistoryLines)
}

// runStoppedStatus answers older clients' poll: stopped once the run was
// stopped (finished as "killed") from Logbook.
func (s *Server) runStoppedStatus(c *caller, v vars) (any, error) {
	entity, _, _ := v.str("entityName")
	project, _, _ := v.str("projectName")
	run, _, err := v.str("runId")
	if err != nil {
		return nil, gqlErrorf("invalid", "%v", err)
	}
	entity, project, run, err = names(c, entity, project, run)
	if err != nil {
		return nil, err
	}
	rs := s.in.Run(entity, project, run)
	return map[string]any{"project": map[string]any{"run": map[string]any{"stopped": rs.State == events.StateKilled}}}, nil
}
