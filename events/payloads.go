package events

import (
	"encoding/json"
)

// Role is a user's role in a project.
type Role string

// Project roles, from most to least privileged.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	RoleViewer Role = "viewer"
)

// Valid reports whether r is one of the project roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleMember || r == RoleViewer
}

// TeamRole is a user's role in a team entity.
type TeamRole string

// Team roles. A team admin acts as Admin on every project of the team.
const (
	TeamAdmin  TeamRole = "admin"
	TeamMember TeamRole = "member"
)

// Valid reports whether r is a team role.
func (r TeamRole) Valid() bool { return r == TeamAdmin || r == TeamMember }

// Run states.
const (
	StateRunning  = "running"
	StateFinished = "finished"
	StateFailed   = "failed"
	StateKilled   = "killed"
	StateCrashed  = "crashed"
)

// UserCreatedV1 creates a user and its personal entity (Event.Entity is the username).
type UserCreatedV1 struct {
	Username    string `json:"username"`
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	// SiteAdmin users may create users and teams. The first user of an
	// installation is one.
	SiteAdmin bool `json:"site_admin,omitempty"`
	// Service marks a non-human account owned by the team in Owner.
	Service bool   `json:"service,omitempty"`
	Owner   string `json:"owner,omitempty"`
}

// KeyCreatedV1 records a new API key. Only the SHA-256 hash of the key is
// ever stored; the key itself is shown once to its owner.
type KeyCreatedV1 struct {
	Username string `json:"username"`
	KeyID    string `json:"key_id"`
	Name     string `json:"name,omitempty"`
	Hash     string `json:"hash"`
}

// KeyRevokedV1 revokes an API key.
type KeyRevokedV1 struct {
	Username string `json:"username"`
	KeyID    string `json:"key_id"`
}

// TeamCreatedV1 creates a team entity (Event.Entity is the team name).
type TeamCreatedV1 struct {
	Name string `json:"name"`
}

// TeamMemberJoinedV1 adds a user to a team (or changes their team role).
type TeamMemberJoinedV1 struct {
	Username string   `json:"username"`
	Role     TeamRole `json:"role"`
}

// ProjectCreatedV1 creates a project; its creator becomes its first Admin.
type ProjectCreatedV1 struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// MemberInvitedV1 invites a user, by username or by email, to a project.
// An invite by email for an address with no user stays pending.
type MemberInvitedV1 struct {
	Username string `json:"username,omitempty"`
	Email    string `json:"email,omitempty"`
	Role     Role   `json:"role"`
}

// MemberJoinedV1 makes a user a member of a project with a role.
type MemberJoinedV1 struct {
	Username string `json:"username"`
	Role     Role   `json:"role"`
}

// InviteRevokedV2 withdraws a pending email invite. Email is lower-case
// (invites are matched case-insensitively) and Role is the role the invite
// offered, so the log says what was withdrawn.
//
// Version 1 was {"email"} with the address as typed; upcastInviteRevokedV1
// lower-cases it and leaves the role empty (unknown).
type InviteRevokedV2 struct {
	Email string `json:"email"`
	Role  Role   `json:"role,omitempty"`
}

// RoleChangedV1 changes a member's role.
type RoleChangedV1 struct {
	Username string `json:"username"`
	Role     Role   `json:"role"`
}

// MemberRemovedV1 removes a member (or records that they left).
type MemberRemovedV1 struct {
	Username string `json:"username"`
}

// ProjectDeletedV1 deletes a project. Its runs vanish from every read; the
// events stay in the log.
type ProjectDeletedV1 struct{}

// RunStartedV1 starts a run. In a proposal Name is the requested display
// name; in the accepted event it is the final, project-unique one.
type RunStartedV1 struct {
	RunID   string          `json:"run_id"`
	Name    string          `json:"name"`
	JobType string          `json:"job_type,omitempty"`
	Group   string          `json:"group,omitempty"`
	Notes   string          `json:"notes,omitempty"`
	Tags    []string        `json:"tags,omitempty"`
	Config  json.RawMessage `json:"config,omitempty"`
	// Resume is "", "allow", "must" or "never" (W&B semantics) in proposals.
	Resume string `json:"resume,omitempty"`
	// Wandb holds what W&B clients send besides the user's config (the
	// "_wandb" config key, host, program, ...), a JSON object kept out of
	// the config so that users never see SDK internals among their
	// hyperparameters.
	Wandb json.RawMessage `json:"wandb,omitempty"`
}

// RunResumedV1 records that an existing run was resumed: it is running again.
type RunResumedV1 struct {
	RunID  string          `json:"run_id"`
	Config json.RawMessage `json:"config,omitempty"`
}

// RunUpdatedV1 changes a run's descriptive fields; nil fields are unchanged.
type RunUpdatedV1 struct {
	Name       *string         `json:"name,omitempty"`
	JobType    *string         `json:"job_type,omitempty"`
	Group      *string         `json:"group,omitempty"`
	Notes      *string         `json:"notes,omitempty"`
	AddTags    []string        `json:"add_tags,omitempty"`
	RemoveTags []string        `json:"remove_tags,omitempty"`
	Config     json.RawMessage `json:"config,omitempty"` // merged into the config, top-level keys
	// Wandb is merged, top-level keys, into the run's W&B client internals
	// (see RunStartedV1.Wandb).
	Wandb json.RawMessage `json:"wandb,omitempty"`
}

// Row is one logged step: a step number, a wall time in Unix seconds and
// metric values.
type Row struct {
	Step   int64            `json:"step"`
	Time   float64          `json:"time"`
	Values map[string]Value `json:"values"`
}

// MetricsLoggedV1 carries a batch of history rows of one run, steps strictly
// increasing. Old logs hold it; it decodes as MetricsLoggedV2 (upcast), and
// the HTTP edge still reads a JSON log body in its shape.
type MetricsLoggedV1 struct {
	Rows []Row `json:"rows"`
}

// SummaryUpdatedV1 sets explicit summary values that override the default
// (last logged value) for those metrics.
type SummaryUpdatedV1 struct {
	Values map[string]Value `json:"values"`
}

// RunFinishedV1 ends a run: state finished (exit code 0), failed (non-zero) or
// killed.
type RunFinishedV1 struct {
	ExitCode int    `json:"exit_code"`
	State    string `json:"state"`
}

// RunCrashedV1 records that a run stopped reporting for too long.
type RunCrashedV1 struct {
	LastSeen float64 `json:"last_seen"`
}

// RunDeletedV1 deletes a run from every read.
type RunDeletedV1 struct{}

// RunLinesWrittenV1 writes lines of one of a run's text files (console
// output "output.log", system-metric records "wandb-events.jsonl") at line
// numbers Offset, Offset+1, ... Lines already there are replaced: a re-sent
// chunk is stored once, and a rewritten line (a progress bar) replaces the
// old one.
type RunLinesWrittenV1 struct {
	File   string   `json:"file"`
	Offset int64    `json:"offset"`
	Lines  []string `json:"lines"`
}

// RunHeartbeatRecordedV1 records that a run's process reported itself alive
// without logging anything (see policy: heartbeats).
type RunHeartbeatRecordedV1 struct{}

// RunStreamReceivedV1 records that lines Offset .. Offset+Count-1 of one of
// a run's W&B streams (File: "wandb-history.jsonl") arrived; FirstStep is
// the _step of the first line (-1 if it has none). W&B clients number the
// lines of a stream from 0 and send them in order, so a chunk that starts
// after the lines received so far leaves a gap: lines the client dropped
// (the JS SDK drops a chunk on a connection error). A later chunk covering
// a gap fills it. Folds apply it with ReceiveLines.
type RunStreamReceivedV1 struct {
	File      string `json:"file"`
	Offset    int64  `json:"offset"`
	Count     int64  `json:"count"`
	FirstStep int64  `json:"first_step"`
}

// LineGap is a run of lines of a stream that never arrived: lines
// FirstLine .. LastLine, between the step logged before it (AfterStep, -1
// if none) and the first step after it (BeforeStep, -1 if unknown).
type LineGap struct {
	FirstLine  int64 `json:"first_line"`
	LastLine   int64 `json:"last_line"`
	AfterStep  int64 `json:"after_step"`
	BeforeStep int64 `json:"before_step"`
}

// MaxLineGaps bounds the gaps a run keeps (the missing lines are counted
// beyond it).
const MaxLineGaps = 100

// ReceiveLines applies pl to a stream of which lines 0 .. received-1 were
// seen, except gaps; lastStep is the run's last logged step. It returns the
// new count, the new gaps and how many lines became missing (negative:
// filled). Both folds (policy and read model) use it, so they agree.
func ReceiveLines(received int64, gaps []LineGap, lastStep int64, pl RunStreamReceivedV1) (int64, []LineGap, int64) {
	var delta int64
	if pl.Count <= 0 || pl.Offset < 0 {
		return received, gaps, 0
	}
	end := pl.Offset + pl.Count // exclusive
	// Fill: remove the received lines from the gaps.
	if pl.Offset < received {
		var out []LineGap
		for _, g := range gaps {
			if end <= g.FirstLine || pl.Offset > g.LastLine {
				out = append(out, g)
				continue
			}
			if g.FirstLine < pl.Offset {
				out = append(out, LineGap{FirstLine: g.FirstLine, LastLine: pl.Offset - 1, AfterStep: g.AfterStep, BeforeStep: pl.FirstStep})
			}
			if g.LastLine >= end {
				out = append(out, LineGap{FirstLine: end, LastLine: g.LastLine, AfterStep: g.AfterStep, BeforeStep: g.BeforeStep})
			}
			delta -= min(end, g.LastLine+1) - max(pl.Offset, g.FirstLine)
		}
		gaps = out
	}
	if pl.Offset > received {
		delta += pl.Offset - received
		if len(gaps) < MaxLineGaps {
			gaps = append(gaps, LineGap{FirstLine: received, LastLine: pl.Offset - 1, AfterStep: lastStep, BeforeStep: pl.FirstStep})
		}
	}
	return max(received, end), gaps, delta
}

// ArtifactCreatedV1 creates a pending version of an artifact in the
// collection named Collection (the artifact's name) of the event's project.
// ArtifactID is the version's id; Digest identifies its content (W&B's
// manifest digest: an unchanged re-log has the same one); Run is the run
// that logs it (its output), "" for none; Aliases are the aliases asked
// for, applied at commit.
type ArtifactCreatedV1 struct {
	ArtifactID  string          `json:"artifact_id"`
	Collection  string          `json:"collection"`
	Type        string          `json:"type"`
	Digest      string          `json:"digest"`
	Run         string          `json:"run,omitempty"`
	Aliases     []string        `json:"aliases,omitempty"`
	Description string          `json:"description,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// ArtifactCommittedV1 commits a pending version: it becomes version
// VersionIndex (vN) of its collection and holds Aliases ("latest" among
// them), which move from the versions that held them in the same event.
// Objects are the hex MD5 digests of the file bodies its manifest names
// (each stored once in the object store, whatever number of versions name
// it); Size and FileCount describe the files; ManifestMD5 is base64(MD5)
// of the stored manifest.
type ArtifactCommittedV1 struct {
	ArtifactID   string   `json:"artifact_id"`
	VersionIndex int      `json:"version_index"`
	Aliases      []string `json:"aliases"`
	Objects      []string `json:"objects"`
	Size         int64    `json:"size"`
	FileCount    int      `json:"file_count"`
	ManifestMD5  string   `json:"manifest_md5"`
}

// ArtifactAliasesAddedV1 gives a committed version aliases, moving each
// from the version of its collection that held it.
type ArtifactAliasesAddedV1 struct {
	ArtifactID string   `json:"artifact_id"`
	Aliases    []string `json:"aliases"`
}

// ArtifactUsedV1 records that the event's run used an artifact version
// (an input of the run), which may live in another project.
type ArtifactUsedV1 struct {
	ArtifactID      string `json:"artifact_id"`
	ArtifactEntity  string `json:"artifact_entity"`
	ArtifactProject string `json:"artifact_project"`
}

// ArtifactDeletedV1 soft-deletes a version: it no longer resolves, lists
// or downloads, and its file bodies become garbage once no live version
// names them. RemovedAliases are the aliases it held (a version holding
// aliases is deleted only when asked to remove them: Force in the
// proposal).
type ArtifactDeletedV1 struct {
	ArtifactID     string   `json:"artifact_id"`
	Force          bool     `json:"force,omitempty"`
	RemovedAliases []string `json:"removed_aliases,omitempty"`
}

// ArtifactLinkedV1 links version ArtifactID (of ArtifactEntity/
// ArtifactProject) into the portfolio Portfolio of the event's project as
// its version VersionIndex; Aliases (with "latest") move to it within the
// portfolio. Type is the linked version's type (the portfolio's).
type ArtifactLinkedV1 struct {
	ArtifactID      string   `json:"artifact_id"`
	ArtifactEntity  string   `json:"artifact_entity"`
	ArtifactProject string   `json:"artifact_project"`
	Portfolio       string   `json:"portfolio"`
	Type            string   `json:"type"`
	VersionIndex    int      `json:"version_index"`
	Aliases         []string `json:"aliases"`
}

// EventQuarantinedV1 skips the event at stream sequence Seq of the log for
// good; Reason says why (shown in the audit).
type EventQuarantinedV1 struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// EventType implementations bind each payload to its type name.
func (UserCreatedV1) EventType() Type          { return UserCreated }
func (KeyCreatedV1) EventType() Type           { return KeyCreated }
func (KeyRevokedV1) EventType() Type           { return KeyRevoked }
func (TeamCreatedV1) EventType() Type          { return TeamCreated }
func (TeamMemberJoinedV1) EventType() Type     { return TeamMemberJoined }
func (ProjectCreatedV1) EventType() Type       { return ProjectCreated }
func (MemberInvitedV1) EventType() Type        { return MemberInvited }
func (MemberJoinedV1) EventType() Type         { return MemberJoined }
func (InviteRevokedV2) EventType() Type        { return InviteRevoked }
func (RoleChangedV1) EventType() Type          { return RoleChanged }
func (MemberRemovedV1) EventType() Type        { return MemberRemoved }
func (ProjectDeletedV1) EventType() Type       { return ProjectDeleted }
func (RunStartedV1) EventType() Type           { return RunStarted }
func (RunResumedV1) EventType() Type           { return RunResumed }
func (RunUpdatedV1) EventType() Type           { return RunUpdated }
func (MetricsLoggedV1) EventType() Type        { return MetricsLogged }
func (SummaryUpdatedV1) EventType() Type       { return SummaryUpdated }
func (RunFinishedV1) EventType() Type          { return RunFinished }
func (RunCrashedV1) EventType() Type           { return RunCrashed }
func (RunDeletedV1) EventType() Type           { return RunDeleted }
func (RunLinesWrittenV1) EventType() Type      { return RunLinesWritten }
func (RunHeartbeatRecordedV1) EventType() Type { return RunHeartbeatRecorded }
func (RunStreamReceivedV1) EventType() Type    { return RunStreamReceived }
func (ArtifactCreatedV1) EventType() Type      { return ArtifactCreated }
func (ArtifactCommittedV1) EventType() Type    { return ArtifactCommitted }
func (ArtifactAliasesAddedV1) EventType() Type { return ArtifactAliasesAdded }
func (ArtifactUsedV1) EventType() Type         { return ArtifactUsed }
func (ArtifactDeletedV1) EventType() Type      { return ArtifactDeleted }
func (ArtifactLinkedV1) EventType() Type       { return ArtifactLinked }
func (EventQuarantinedV1) EventType() Type     { return EventQuarantined }
