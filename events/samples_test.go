package events

import (
	"encoding/json"
	"math"
	"time"
)

var sampleTime = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func strp(s string) *string { return &s }

func mustRows(rows []Row) MetricsLoggedV2 {
	m, err := FromRows(rows)
	if err != nil {
		panic(err)
	}
	return m
}

// samples holds one example event of every registered type; the golden test
// fails for a type without one. Add a sample with every new event type.
var samples = []Event{
	{Entity: "alice", Payload: UserCreatedV1{Username: "alice", Email: "alice@example.com", DisplayName: "Alice"}},
	{Entity: "alice", Payload: KeyCreatedV1{Username: "alice", KeyID: "k1", Name: "laptop", Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
	{Entity: "alice", Payload: KeyRevokedV1{Username: "alice", KeyID: "k1"}},
	{Entity: "your-team-name", Payload: TeamCreatedV1{Name: "your-team-name"}},
	{Entity: "your-team-name", Payload: TeamMemberJoinedV1{Username: "alice", Role: TeamMember}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ProjectCreatedV1{Name: "awesome-segmentation", Description: "segmentation experiments"}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: MemberInvitedV1{Email: "carol@example.com", Role: RoleViewer}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: MemberJoinedV1{Username: "bob", Role: RoleMember}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: InviteRevokedV2{Email: "dave@example.com", Role: RoleMember}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: RoleChangedV1{Username: "bob", Role: RoleAdmin}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: MemberRemovedV1{Username: "bob"}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ProjectDeletedV1{}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunStartedV1{
		RunID: "01JDX0000000000000000000AA", Name: "my-run", JobType: "training", Group: "sweep-1", Notes: "baseline",
		Tags: []string{"baseline", "unet"}, Config: json.RawMessage(`{"learning_rate":0.001,"optimizer":{"name":"adam"}}`)}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunResumedV1{RunID: "01JDX0000000000000000000AA", Config: json.RawMessage(`{"epochs":20}`)}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunUpdatedV1{Name: strp("my-run-renamed"), AddTags: []string{"best"}, RemoveTags: []string{"baseline"}}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: mustRows([]Row{
		{Step: 0, Time: 1795779452.902, Values: map[string]Value{"loss": 0.5, "accuracy": 0.8}},
		{Step: 1, Time: 1795779453.5, Values: map[string]Value{"loss": Value(math.NaN()), "grad_norm": Value(math.Inf(1))}},
	})},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: SummaryUpdatedV1{Values: map[string]Value{"best_accuracy": 0.85}}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunFinishedV1{ExitCode: 0, State: StateFinished}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunCrashedV1{LastSeen: 1795779453.5}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunDeletedV1{}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunLinesWrittenV1{
		File: "output.log", Offset: 3, Lines: []string{"2026-11-27T11:54:59.017265 epoch 1", "ERROR 2026-11-27T11:55:00.000001 warning: lr too high"}}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunHeartbeatRecordedV1{}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AA", Payload: RunStreamReceivedV1{
		File: "wandb-history.jsonl", Offset: 40, Count: 20, FirstStep: 40}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ArtifactCreatedV1{ArtifactID: "01JDX0000000000000000000AR",
		Collection: "dataset", Type: "dataset", Digest: "56f3d3c059a0e5e1f2b7c0a4d2d9b8e1", Run: "01JDX0000000000000000000AA",
		Aliases: []string{"best", "latest"}, Description: "train split", Metadata: json.RawMessage(`{"rows":1000}`)}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ArtifactCommittedV1{ArtifactID: "01JDX0000000000000000000AR",
		VersionIndex: 0, Aliases: []string{"best", "latest"}, Objects: []string{"dc384ea53f3c1e8ea57d2f40ba1c0fd6"}, Size: 11, FileCount: 1,
		ManifestMD5: "YLRIKs0w1EkKl4JFhPr2qQ=="}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ArtifactAliasesAddedV1{ArtifactID: "01JDX0000000000000000000AR", Aliases: []string{"production"}}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Run: "01JDX0000000000000000000AB", Payload: ArtifactUsedV1{
		ArtifactID: "01JDX0000000000000000000AR", ArtifactEntity: "your-team-name", ArtifactProject: "awesome-segmentation"}},
	{Entity: "your-team-name", Project: "awesome-segmentation", Payload: ArtifactDeletedV1{ArtifactID: "01JDX0000000000000000000AR", Force: true, RemovedAliases: []string{"best"}}},
	{Entity: "your-team-name", Project: "model-registry", Payload: ArtifactLinkedV1{ArtifactID: "01JDX0000000000000000000AR",
		ArtifactEntity: "your-team-name", ArtifactProject: "awesome-segmentation", Portfolio: "segmenter", Type: "model", VersionIndex: 0,
		Aliases: []string{"staging", "latest"}}},
	{Entity: "alice", Payload: EventQuarantinedV1{Seq: 1234, Reason: "undecodable: written by a newer binary"}},
}

func init() {
	for i := range samples {
		e := &samples[i]
		e.ID = DerivedID("01JDX00000000000000000000P", i)
		e.Type = e.Payload.EventType()
		e.Version = CurrentVersion(e.Type)
		e.Actor = "alice"
		e.Time = sampleTime
		e.Cause = "01JDX00000000000000000000P"
	}
}
