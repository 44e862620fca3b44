// Package events defines Logbook's event log: one envelope for every event,
// typed payloads registered under explicit, stable type names with a schema
// version, name validation, the JSON codec and the subject layout.
//
// A proposal (what a client asks for) uses the same envelope as the event the
// policy appends once it accepts it; only the subject differs.
package events

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Type is the stable name of an event type. Types are past tense, never
// derived from Go type names, and never renamed.
type Type string

// The event types. A new shape of an existing type gets a new version and an
// upcaster (see codec.go), never a new meaning under the same version.
const (
	UserCreated      Type = "user_created"
	KeyCreated       Type = "key_created"
	KeyRevoked       Type = "key_revoked"
	TeamCreated      Type = "team_created"
	TeamMemberJoined Type = "team_member_joined"
	ProjectCreated   Type = "project_created"
	MemberInvited    Type = "member_invited"
	MemberJoined     Type = "member_joined"
	RoleChanged      Type = "role_changed"
	MemberRemoved    Type = "member_removed"
	ProjectDeleted   Type = "project_deleted"
	RunStarted       Type = "run_started"
	MetricsLogged    Type = "metrics_logged"
	SummaryUpdated   Type = "summary_updated"
	RunFinished      Type = "run_finished"
	InviteRevoked    Type = "invite_revoked"
	RunUpdated       Type = "run_updated"
	RunCrashed       Type = "run_crashed"
	RunResumed       Type = "run_resumed"
	RunDeleted       Type = "run_deleted"
	RunLinesWritten  Type = "run_lines_written"
	// RunHeartbeatRecorded records that a quiet run is still alive. The
	// policy records at most one per quarter of the crash timeout, so a run
	// that heartbeats every few seconds does not flood the log.
	RunHeartbeatRecorded Type = "run_heartbeat_recorded"
	// RunStreamReceived records which lines of a run's W&B history stream
	// arrived; lines skipped by a jump of the offset are the run's gaps.
	RunStreamReceived Type = "run_stream_received"

	// Artifacts: versioned collections of files (W&B artifacts). A version
	// is created pending, committed once its files and manifest are
	// stored (which gives it its index vN and its aliases), used by runs
	// (lineage) and soft-deleted.
	ArtifactCreated      Type = "artifact_created"
	ArtifactCommitted    Type = "artifact_committed"
	ArtifactAliasesAdded Type = "artifact_aliases_added"
	ArtifactUsed         Type = "artifact_used"
	ArtifactDeleted      Type = "artifact_deleted"
	// ArtifactLinked links a committed version into a portfolio of the
	// event's project (W&B's link_artifact): a collection of links to
	// versions that live elsewhere, with its own vN and aliases.
	ArtifactLinked Type = "artifact_linked"

	// EventQuarantined records a site admin's decision that the event at
	// one stream sequence of the log (one that cannot be decoded or
	// applied) is skipped by every replayer: the policy state, every
	// projection, digests and time travel. It lives on the admin's
	// entity-level subject, so the site audit shows it.
	EventQuarantined Type = "event_quarantined"
)

// Payload is the typed body of an event.
type Payload interface {
	EventType() Type
}

// Event is one entry of the log (or a proposal for one).
//
// Entity and Project route the event; Project is empty for events about an
// entity itself (users, teams, keys). Run is set for run events. Actor is the
// verified user who caused it, never a value a client wrote. Cause is the id
// of the proposal the policy decided to produce this event; it makes
// re-delivered proposals idempotent.
type Event struct {
	ID      string
	Type    Type
	Version int
	Entity  string
	Project string
	Run     string
	Actor   string
	Time    time.Time
	Cause   string
	Payload Payload
}

var (
	entropyMu sync.Mutex
	entropy   = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new ULID string, monotonic within this process.
func NewID(t time.Time) string {
	entropyMu.Lock()
	defer entropyMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(t), entropy).String()
}

// DerivedID returns the i-th id derived from a proposal id: the same proposal
// always yields the same event ids, so a re-decided proposal is deduplicated
// by the stream's Nats-Msg-Id window and by our own records. i = 0 returns id.
func DerivedID(id string, i int) string {
	if i == 0 {
		return id
	}
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return id + "-" + itoa(i)
	}
	// Add i to the 80-bit entropy part, big endian, carrying into the time
	// part only on overflow (practically never).
	carry := uint(i)
	for b := 15; b >= 0 && carry > 0; b-- {
		sum := uint(u[b]) + carry&0xff
		u[b] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	return u.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// IDTime returns the time encoded in a ULID, or the zero time.
func IDTime(id string) time.Time {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return time.Time{}
	}
	return ulid.Time(u.Time())
}
