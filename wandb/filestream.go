package wandb

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/logbook/logbook/errs"
	"github.com/logbook/logbook/events"
	lbhttp "github.com/logbook/logbook/http"
	"github.com/logbook/logbook/policy"
)

// The files of a run's file_stream.
const (
	historyFile = "wandb-history.jsonl"
	summaryFile = "wandb-summary.json"
	eventsFile  = "wandb-events.jsonl"
	outputFile  = "output.log"
)

// MaxFileStreamBody bounds a file_stream request (wandb-core splits its
// requests at about 10 MiB).
const MaxFileStreamBody = 32 << 20

// chunkBytes bounds what one proposal carries, well below the bus's limit.
const chunkBytes = 2 << 20

type fileChunk struct {
	Offset  int64    `json:"offset"`
	Content []string `json:"content"`
}

type fileStreamBody struct {
	Files      map[string]fileChunk `json:"files"`
	Uploaded   []string             `json:"uploaded"`
	Preempting bool                 `json:"preempting"`
	Complete   bool                 `json:"complete"`
	ExitCode   *int                 `json:"exitcode"`
}

// fileStream takes a W&B file_stream request: history lines become metric
// rows (idempotent by step), the summary line a summary update, console
// output and system-metric lines are written at their line numbers
// (idempotent by offset), and complete + exitcode finish the run.
func (s *Server) fileStream(w http.ResponseWriter, r *http.Request) {
	c, err := s.authenticate(r)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	entity, project, run, err := runPath(r)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	body, err := readFileStream(w, r)
	if err != nil {
		lbhttp.WriteError(w, s.log, err)
		return
	}
	rs := s.in.Run(entity, project, run)
	if !rs.Exists {
		lbhttp.WriteError(w, s.log, errs.New(errs.NotFound, "run_not_found",
			"run %s/%s/%s does not exist or you are not a member of its project; start it with init (UpsertBucket) first", entity, project, run))
		return
	}
	if rs.State == events.StateKilled {
		// Stopped from Logbook: tell the client to stop; what it sends is
		// no longer stored.
		lbhttp.WriteJSON(w, http.StatusOK, map[string]any{"stopped": true})
		return
	}
	ctx := r.Context()
	// A stopped run keeps its summary and history: the summary must
	// describe the history the run holds (its rows are refused as
	// run_finished too).
	live := rs.State == events.StateRunning || rs.State == events.StateCrashed
	stored := func(rej *policy.Rejection, err error) bool {
		if err != nil {
			// A failure of Logbook itself: its coded status (507
			// storage_full, 503 unavailable), which W&B clients retry.
			if st, _ := statusOf(err); st >= 500 {
				s.log.Error("file_stream", "run", entity+"/"+project+"/"+run, "err", err)
			}
			lbhttp.WriteError(w, s.log, err)
			return false
		}
		if rej != nil && rej.Code != policy.CodeRunFinished {
			// A finished run ignores late data (a retried final request);
			// anything else is refused and the client is told why.
			writeStatus(w, statusOfRejection(rej.Code), string(rej.Code), rej.Message)
			return false
		}
		return true
	}
	if !s.storeFiles(ctx, c, entity, project, run, body.Files, live, stored) {
		return
	}
	// "uploaded" names files whose PUT succeeded: they are in the object
	// store already. Any other request, a heartbeat ({}) or "preempting"
	// included, shows the run is alive: the crash detector hears of it
	// (ingest records a heartbeat only when the run has been quiet).
	if !body.Complete {
		_, err := s.in.Heartbeat(ctx, c.user.Username, events.NewID(time.Now()), entity, project, run)
		if !stored(edgeRejection(err)) {
			return
		}
	}
	if body.Complete {
		code := 0
		if body.ExitCode != nil {
			code = *body.ExitCode
		}
		_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project, Run: run,
			Payload: events.RunFinishedV1{ExitCode: code}}, true)
		if !stored(rej, err) {
			return
		}
	}
	lbhttp.WriteJSON(w, http.StatusOK, map[string]any{})
}

// storeFiles stores what a file_stream request carries: which history
// lines arrived (first, so that a gap, an offset jump, is recorded before
// the rows after it), the rows, the summary and the text files. It stops
// at the first failure, which stored has answered.
func (s *Server) storeFiles(ctx context.Context, c *caller, entity, project, run string, files map[string]fileChunk, live bool,
	stored func(*policy.Rejection, error) bool) bool {
	if ch, ok := files[historyFile]; ok && len(ch.Content) > 0 && live {
		if !stored(s.streamReceived(ctx, c, entity, project, run, ch)) {
			return false
		}
	}
	if ch, ok := files[historyFile]; ok && !stored(s.logHistory(ctx, c, entity, project, run, ch)) {
		return false
	}
	if ch, ok := files[summaryFile]; ok && len(ch.Content) > 0 && live {
		if !stored(s.summary(ctx, c, entity, project, run, ch.Content[len(ch.Content)-1])) {
			return false
		}
	}
	for _, f := range []string{outputFile, eventsFile} {
		if ch, ok := files[f]; ok && !stored(s.writeLines(ctx, c, entity, project, run, f, ch)) {
			return false
		}
	}
	return true
}

// runPath reads and checks a run's entity, project and id from the path.
func runPath(r *http.Request) (entity, project, run string, err error) {
	entity, project, run = r.PathValue("entity"), r.PathValue("project"), r.PathValue("run")
	for _, err := range []error{events.ValidateEntity(entity), events.ValidateProject(project), events.ValidateRunID(run)} {
		if err != nil {
			return "", "", "", errs.E(errs.Invalid, "%v", err)
		}
	}
	return entity, project, run, nil
}

// readFileStream reads a file_stream body, gzipped or not.
func readFileStream(w http.ResponseWriter, r *http.Request) (fileStreamBody, error) {
	var body fileStreamBody
	var rd io.Reader = http.MaxBytesReader(w, r.Body, MaxFileStreamBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return body, errs.New(errs.Invalid, "invalid", "body is not gzip: %v", err)
		}
		rd = io.LimitReader(zr, MaxFileStreamBody)
	}
	data, err := readAll(rd, r)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return body, lbhttp.TooLarge(MaxFileStreamBody)
	} else if err != nil {
		return body, errs.New(errs.Invalid, "invalid", "cannot read the file_stream body: %v", err)
	}
	if err := events.CheckJSONText(data); err != nil {
		return body, errs.New(errs.Invalid, "invalid_utf8", "%v", err)
	}
	body, ok := parseEnvelope(data)
	if !ok {
		body = fileStreamBody{}
		err = json.Unmarshal(data, &body)
	}
	if err != nil && len(bytes.TrimSpace(data)) > 0 {
		return body, errs.New(errs.Invalid, "invalid_json", "file_stream body is not a JSON object: %v", err)
	}
	// History, summary and system-metric lines are JSON documents of their
	// own: their keys must be valid Unicode too.
	for _, f := range []string{historyFile, summaryFile, eventsFile} {
		for i, line := range body.Files[f].Content {
			if strings.IndexByte(line, '\\') < 0 {
				// Read from a checked body, the line is UTF-8 (JSON turns
				// its escapes into characters); only a line's own escapes
				// can still be wrong.
				continue
			}
			if err := events.CheckJSONText([]byte(line)); err != nil {
				return body, errs.New(errs.Invalid, "invalid_utf8", "%s line %d: %v", f, body.Files[f].Offset+int64(i), err)
			}
		}
	}
	return body, nil
}

// readAll reads the body into a buffer sized once by its Content-Length
// (io.ReadAll grows from 512 bytes, copying a 2 MB body about 12 times).
func readAll(rd io.Reader, r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n < 0 || n > MaxFileStreamBody || r.Header.Get("Content-Encoding") == "gzip" {
		n = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	_, err := buf.ReadFrom(rd)
	return buf.Bytes(), err
}

// writeStatus answers with W&B's own status for a refusal, in the native
// error shape.
func writeStatus(w http.ResponseWriter, status int, code, msg string) {
	lbhttp.WriteJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// statusOfRejection is the file_stream status of a refusal: W&B clients
// tell 403 and 404 apart, everything else is a 400.
func statusOfRejection(c policy.Code) int {
	switch c {
	case policy.CodeForbidden, policy.CodeRunNotYours, policy.CodeUnauthenticated:
		return 403
	case policy.CodeRunNotFound, policy.CodeProjectNotFound:
		return 404
	}
	return 400
}

// logHistory turns history lines into metric rows: _step is the step,
// _timestamp the time; _runtime is not stored (it is the time since the
// run started, which Logbook derives from the times). Lines that are not
// JSON objects or hold no numeric value are skipped.
func (s *Server) logHistory(ctx context.Context, c *caller, entity, project, run string, ch fileChunk) (*policy.Rejection, error) {
	var rows events.Builder
	size := 0
	flush := func() (*policy.Rejection, error) {
		if rows.Rows() == 0 {
			return nil, nil
		}
		batch, err := rows.Build()
		rows.Reset()
		size = 0
		if err != nil {
			return nil, err // the loop below keeps steps increasing: a bug
		}
		_, err = s.in.LogRows(ctx, c.user.Username, events.NewID(time.Now()), entity, project, run, batch)
		return edgeRejection(err)
	}
	last := int64(-1)
	h := historyLine{valid: map[string]bool{}}
	for i, line := range ch.Content {
		step, ok := s.historyRow(&h, &rows, line, ch.Offset+int64(i), last, run)
		if !ok {
			continue
		}
		last = step
		size += len(line) + 64
		if size > chunkBytes || rows.Rows() >= events.MaxRowsPerBatch {
			if rej, err := flush(); rej != nil || err != nil {
				return rej, err
			}
		}
	}
	return flush()
}

// historyRow adds the history line at offset to rows unless it holds no
// metric or its step is not after last; it returns the step. The line is
// read on the fast path (historyLine) or, for what that does not take, by
// the lenient parser.
func (s *Server) historyRow(h *historyLine, rows *events.Builder, line string, offset, last int64, run string) (int64, bool) {
	if h.read(line) {
		step, t := offset, h.time
		if h.hasStep {
			step = h.step
		}
		if !h.hasTime {
			t = float64(time.Now().UnixNano()) / 1e9
		}
		if len(h.keys) == 0 || step < 0 || step <= last {
			return 0, false
		}
		rows.Row(step, t)
		for j, k := range h.keys {
			rows.Value(k, h.vals[j])
		}
		return step, true
	}
	return s.lenientRow(rows, line, offset, last, run)
}

// lenientRow is historyRow for any line, through parseLine and metrics.
func (s *Server) lenientRow(rows *events.Builder, line string, offset, last int64, run string) (int64, bool) {
	m, err := parseLine(line)
	if err != nil {
		s.log.Debug("history line skipped", "run", run, "offset", offset, "err", err)
		return 0, false
	}
	step, ok := intField(m, "_step")
	if !ok {
		step = offset
	}
	if step < 0 || step <= last {
		return 0, false // steps increase within a batch
	}
	t, ok := floatField(m, "_timestamp")
	if !ok {
		t = float64(time.Now().UnixNano()) / 1e9
	}
	vals, skipped := metrics(m)
	if len(skipped) > 0 {
		s.log.Debug("metric keys skipped", "run", run, "keys", skipped)
	}
	if len(vals) == 0 {
		return 0, false
	}
	rows.Row(step, t)
	for k, v := range vals {
		rows.Value(k, float64(v))
	}
	return step, true
}

// streamReceived records that the chunk's history lines arrived (event
// run_stream_received); a chunk that changes nothing (a retry) is not
// proposed.
func (s *Server) streamReceived(ctx context.Context, c *caller, entity, project, run string, ch fileChunk) (*policy.Rejection, error) {
	first := int64(-1)
	if m, err := parseLine(ch.Content[0]); err == nil {
		if st, ok := intField(m, "_step"); ok && st >= 0 {
			first = st
		}
	}
	ev := events.Event{Entity: entity, Project: project, Run: run, Payload: events.RunStreamReceivedV1{
		File: historyFile, Offset: ch.Offset, Count: int64(len(ch.Content)), FirstStep: first}}
	if d := s.in.Check(withActor(ev, c)); d.Rejection == nil && len(d.Events) == 0 {
		return nil, nil
	}
	_, rej, err := s.propose(ctx, c, ev, false)
	return rej, err
}

// withActor returns ev as a proposal of c, for a dry run (Check).
func withActor(ev events.Event, c *caller) events.Event {
	ev.ID = events.NewID(time.Now())
	ev.Actor = c.user.Username
	ev.Time = time.Now().UTC()
	return ev
}

// summary replaces the run's summary values with the numeric values of a
// W&B summary line.
func (s *Server) summary(ctx context.Context, c *caller, entity, project, run, line string) (*policy.Rejection, error) {
	m, err := parseLine(line)
	if err != nil {
		return nil, nil // a summary we cannot read is skipped, not fatal
	}
	vals, _ := metrics(m)
	if len(vals) == 0 {
		return nil, nil
	}
	_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project, Run: run,
		Payload: events.SummaryUpdatedV1{Values: vals}}, false)
	return rej, err
}

// writeLines writes console output or system-metric lines at their line
// numbers.
func (s *Server) writeLines(ctx context.Context, c *caller, entity, project, run, file string, ch fileChunk) (*policy.Rejection, error) {
	if ch.Offset < 0 {
		return &policy.Rejection{Code: policy.CodeInvalid, Message: file + ": offset must not be negative"}, nil
	}
	offset := ch.Offset
	var lines []string
	size := 0
	flush := func() (*policy.Rejection, error) {
		if len(lines) == 0 {
			return nil, nil
		}
		_, rej, err := s.propose(ctx, c, events.Event{Entity: entity, Project: project, Run: run,
			Payload: events.RunLinesWrittenV1{File: file, Offset: offset, Lines: lines}}, false)
		offset += int64(len(lines))
		lines, size = nil, 0
		return rej, err
	}
	for _, l := range ch.Content {
		if len(l) > policy.MaxLineBytes {
			l = l[:policy.MaxLineBytes] // wandb-core drops lines over 10 MiB; Logbook keeps the first MiB
		}
		lines = append(lines, l)
		size += len(l) + 8
		if size > chunkBytes || len(lines) >= policy.MaxLinesPerWrite {
			if rej, err := flush(); rej != nil || err != nil {
				return rej, err
			}
		}
	}
	return flush()
}

// edgeRejection splits an error of the ingest edge into a policy refusal
// (a 4xx) and a failure of Logbook itself.
func edgeRejection(err error) (*policy.Rejection, error) {
	if e, ok := errs.As(err); ok && e.Kind != errs.Unavailable && e.Kind != errs.Internal && e.Kind != errs.StorageFull {
		return &policy.Rejection{Code: policy.Code(e.Code), Message: e.Message}, nil
	}
	return nil, err
}
