// Package projections folds the event log into Logbook's read model in
// Badger and answers queries from it.
//
// The fold is deterministic: replaying the same events into an empty
// directory gives the same keys and values (Digest proves it). The last
// applied stream sequence is written in the same transaction as the batch
// it covers, so a crash never loses or double-applies an event.
package projections

import (
	"encoding/json"
	"time"

	"github.com/logbook/logbook/events"
)

// User is a user as the read side sees it.
type User struct {
	Username    string `json:"username"`
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	SiteAdmin   bool   `json:"site_admin,omitempty"`
	Service     bool   `json:"service,omitempty"`
	Owner       string `json:"owner,omitempty"`
}

// Team is a team entity.
type Team struct {
	Name    string                     `json:"name"`
	Members map[string]events.TeamRole `json:"members"`
}

// Project is a project with its members and pending invites.
type Project struct {
	Entity      string                 `json:"entity"`
	Name        string                 `json:"name"`
	Description string                 `json:"description,omitempty"`
	CreatedBy   string                 `json:"created_by"`
	CreatedAt   time.Time              `json:"created_at"`
	Members     map[string]events.Role `json:"members"`
	Pending     map[string]events.Role `json:"pending_invites,omitempty"`
	RunCount    int                    `json:"run_count"`
}

// MetricSummary aggregates one metric of a run.
type MetricSummary struct {
	Last  events.Value `json:"last"`
	Min   events.Value `json:"min"`
	Max   events.Value `json:"max"`
	Step  int64        `json:"step"`
	Count int64        `json:"count"`
	// ChunkStep is the first step of the metric's last history chunk
	// (where the next points go while it has room).
	ChunkStep int64 `json:"chunk_step"`
}

// Run is a run's document.
type Run struct {
	ID        string          `json:"id"`
	Entity    string          `json:"entity"`
	Project   string          `json:"project"`
	Name      string          `json:"name"`
	Owner     string          `json:"owner"`
	State     string          `json:"state"`
	JobType   string          `json:"job_type,omitempty"`
	Group     string          `json:"group,omitempty"`
	Notes     string          `json:"notes,omitempty"`
	Tags      []string        `json:"tags"`
	Config    json.RawMessage `json:"config"`
	ExitCode  *int            `json:"exit_code,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// LastStep is the last logged step (-1 before any), Rows the number of
	// history rows.
	LastStep int64 `json:"last_step"`
	Rows     int64 `json:"history_rows"`
	// Metrics aggregates every logged metric; Explicit holds values set with
	// a summary update, which override the last logged value in Summary.
	Metrics  map[string]*MetricSummary `json:"metrics"`
	Explicit map[string]events.Value   `json:"explicit_summary,omitempty"`
	// Lines counts the lines of each text file of the run (console output,
	// system-metric records): one more than the highest line number written.
	Lines map[string]int64 `json:"lines,omitempty"`
	// Wandb holds W&B client internals (the "_wandb" config key, host,
	// program), kept out of Config.
	Wandb json.RawMessage `json:"wandb,omitempty"`
	// HistoryLines counts the lines of the run's W&B history stream that
	// arrived (one more than the highest line number); DataQuality says
	// what never arrived.
	HistoryLines int64        `json:"history_lines,omitempty"`
	DataQuality  *DataQuality `json:"data_quality,omitempty"`
}

// DataQuality is a run's summary of data that never arrived: history
// lines its W&B client skipped (a jump of the file_stream offset), with
// where they were (at most events.MaxLineGaps gaps are listed; every
// missing line is counted).
type DataQuality struct {
	MissingHistoryLines int64            `json:"missing_history_lines"`
	HistoryGaps         []events.LineGap `json:"history_gaps"`
}

// Line is one line of a run's text file.
type Line struct {
	N    int64  `json:"n"`
	Text string `json:"text"`
}

// Summary is the run's summary: the last value of every metric, overridden
// by explicitly set values.
func (r *Run) Summary() map[string]events.Value {
	out := make(map[string]events.Value, len(r.Metrics)+len(r.Explicit))
	for k, m := range r.Metrics {
		out[k] = m.Last
	}
	for k, v := range r.Explicit {
		out[k] = v
	}
	return out
}

// Point is one value of a metric's history.
type Point struct {
	Step  int64        `json:"step"`
	Time  float64      `json:"time"`
	Value events.Value `json:"value"`
}
