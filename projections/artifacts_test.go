package projections

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/logbook/logbook/events"
)

// artifactLog builds a log with artifacts: alice's project p logs dataset
// v0 (aliases best, latest) and v1 from run "prod", a pending version
// that is later deleted, bob's project q uses v0 from run "cons", v0 is
// deleted with force, and project gone (with a collection) is deleted.
func artifactLog(t *testing.T) []RawRecord {
	t.Helper()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var log []RawRecord
	add := func(e events.Event) {
		e.ID = events.NewID(t0)
		e.Type = e.Payload.EventType()
		e.Version = events.CurrentVersion(e.Type)
		if e.Actor == "" {
			e.Actor = "alice"
		}
		e.Time = t0.Add(time.Duration(len(log)) * time.Second)
		data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, RawRecord{Seq: uint64(len(log) + 1), Data: data, Time: e.Time})
	}
	add(events.Event{Entity: "alice", Payload: events.UserCreatedV1{Username: "alice"}})
	add(events.Event{Entity: "bob", Actor: "bob", Payload: events.UserCreatedV1{Username: "bob"}})
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ProjectCreatedV1{Name: "p"}})
	add(events.Event{Entity: "bob", Project: "q", Actor: "bob", Payload: events.ProjectCreatedV1{Name: "q"}})
	add(events.Event{Entity: "alice", Project: "p", Run: "prod", Payload: events.RunStartedV1{RunID: "prod"}})
	add(events.Event{Entity: "bob", Project: "q", Run: "cons", Actor: "bob", Payload: events.RunStartedV1{RunID: "cons"}})
	created := func(id, coll, run string, aliases ...string) {
		add(events.Event{Entity: "alice", Project: "p", Payload: events.ArtifactCreatedV1{ArtifactID: id, Collection: coll, Type: "dataset",
			Digest: "d-" + id, Run: run, Aliases: aliases, Description: "desc " + id}})
	}
	commit := func(id string, index int, aliases ...string) {
		add(events.Event{Entity: "alice", Project: "p", Payload: events.ArtifactCommittedV1{ArtifactID: id, VersionIndex: index,
			Aliases: aliases, Objects: []string{"aa"}, Size: 10, FileCount: 2, ManifestMD5: "m-" + id}})
	}
	created("A0", "dataset", "prod", "best")
	commit("A0", 0, "best", "latest")
	created("A1", "dataset", "prod")
	commit("A1", 1, "latest")
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ArtifactAliasesAddedV1{ArtifactID: "A0", Aliases: []string{"prod"}}})
	created("A2", "dataset", "")
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ArtifactDeletedV1{ArtifactID: "A2"}})
	add(events.Event{Entity: "bob", Project: "q", Run: "cons", Actor: "bob", Payload: events.ArtifactUsedV1{ArtifactID: "A0", ArtifactEntity: "alice", ArtifactProject: "p"}})
	add(events.Event{Entity: "alice", Project: "p", Run: "prod", Payload: events.ArtifactUsedV1{ArtifactID: "A1", ArtifactEntity: "alice", ArtifactProject: "p"}})
	add(events.Event{Entity: "alice", Project: "gone", Payload: events.ProjectCreatedV1{Name: "gone"}})
	add(events.Event{Entity: "alice", Project: "gone", Payload: events.ArtifactCreatedV1{ArtifactID: "G0", Collection: "model", Type: "model", Digest: "g"}})
	add(events.Event{Entity: "alice", Project: "gone", Payload: events.ProjectDeletedV1{}})
	link := func(id string, index int, aliases ...string) {
		add(events.Event{Entity: "bob", Project: "q", Actor: "bob", Payload: events.ArtifactLinkedV1{ArtifactID: id, ArtifactEntity: "alice",
			ArtifactProject: "p", Portfolio: "reg", Type: "dataset", VersionIndex: index, Aliases: aliases}})
	}
	link("A1", 0, "staging", "latest")
	link("A0", 1, "latest")
	add(events.Event{Entity: "alice", Project: "p", Payload: events.ArtifactDeletedV1{ArtifactID: "A0", Force: true, RemovedAliases: []string{"best", "prod"}}})
	return log
}

// TestArtifactProjection folds artifact events: collections, versions by
// index with aliases moved, lineage both ways (across projects), pending
// and soft-deleted versions hidden, a deleted project's artifacts gone.
func TestArtifactProjection(t *testing.T) {
	log := artifactLog(t)
	s := mustOpen(t, Options{InMemory: true})
	// Fold all but the last event (v0's deletion) first.
	if _, err := s.ReplayTo(t.Context(), sliceSource(log, 3), uint64(len(log)-1), nil); err != nil {
		t.Fatal(err)
	}
	colls, err := s.ArtifactCollections("alice", "p")
	if err != nil || len(colls) != 1 {
		t.Fatalf("collections %+v %v", colls, err)
	}
	c := colls[0]
	if c.Name != "dataset" || c.Type != "dataset" || c.Live != 2 || c.Pending != 0 || fmt.Sprint(c.Versions) != "[A0 A1]" ||
		fmt.Sprint(c.Aliases) != "map[best:A0 latest:A1 prod:A0]" {
		t.Fatalf("collection %+v", c)
	}
	vs, err := s.ArtifactVersions("alice", "p", "dataset")
	if err != nil || len(vs) != 2 || vs[0].ID != "A0" || vs[0].Index != 0 || fmt.Sprint(vs[0].Aliases) != "[best prod]" ||
		vs[1].Index != 1 || fmt.Sprint(vs[1].Aliases) != "[latest]" {
		t.Fatalf("versions %+v %v", vs, err)
	}
	v0 := vs[0]
	if v0.Run == nil || v0.Run.Run != "prod" || len(v0.UsedBy) != 1 || v0.UsedBy[0] != (RunRef{Entity: "bob", Project: "q", Run: "cons", Time: v0.UsedBy[0].Time}) ||
		v0.Size != 10 || v0.FileCount != 2 || v0.ManifestMD5 != "m-A0" || v0.Digest != "d-A0" || v0.CommittedAt == nil || v0.CreatedBy != "alice" {
		t.Fatalf("v0 %+v", v0)
	}
	for name, want := range map[string]string{"latest": "A1", "best": "A0", "prod": "A0", "v0": "A0", "v1": "A1", "A1": "A1"} {
		if v, err := s.ResolveArtifact("alice", "p", "dataset", name); err != nil || v.ID != want {
			t.Errorf("%s resolved to %q (%v), want %s", name, v.ID, err, want)
		}
	}
	for _, name := range []string{"v2", "A2", "nope"} { // A2 was pending, then deleted
		if _, err := s.ResolveArtifact("alice", "p", "dataset", name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	in, out, err := s.RunArtifacts("bob", "q", "cons")
	if err != nil || len(in) != 1 || in[0].ID != "A0" || in[0].Entity != "alice" || len(out) != 0 {
		t.Fatalf("cons: in %v out %v %v", in, out, err)
	}
	in, out, _ = s.RunArtifacts("alice", "p", "prod")
	if len(in) != 1 || in[0].ID != "A1" || len(out) != 2 || out[0].ID != "A0" || out[1].ID != "A1" {
		t.Fatalf("prod: in %v out %v", in, out) // A2 has no run
	}
	if _, err := s.ArtifactByID("G0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted project's version: %v", err)
	}
	if cs, _ := s.ArtifactCollections("alice", "gone"); len(cs) != 0 {
		t.Fatalf("a deleted project's collections: %v", cs)
	}

	// bob's portfolio "reg" links A1 (v0, staging) and A0 (v1, latest).
	if vs, err := s.ArtifactVersions("bob", "q", "reg"); err != nil || len(vs) != 2 || vs[0].ID != "A1" || vs[1].ID != "A0" {
		t.Fatalf("portfolio versions %+v %v", vs, err)
	}
	for name, want := range map[string]string{"staging": "A1", "latest": "A0", "v0": "A1", "v1": "A0", "A0": "A0"} {
		if v, err := s.ResolveArtifact("bob", "q", "reg", name); err != nil || v.ID != want {
			t.Errorf("reg:%s resolved to %q (%v), want %s", name, v.ID, err, want)
		}
	}
	if c, _ := s.ArtifactCollection("bob", "q", "reg"); !c.Portfolio || c.Live != 2 {
		t.Fatalf("portfolio %+v", c)
	}

	// v0 deleted: hidden from the versions and from its names; the
	// collection counts one live version; lineage keeps naming it (the
	// reader filters deleted versions).
	if _, err := s.ReplayTo(t.Context(), sliceSource(log, 3), 0, nil); err != nil {
		t.Fatal(err)
	}
	vs, _ = s.ArtifactVersions("alice", "p", "dataset")
	if len(vs) != 1 || vs[0].ID != "A1" {
		t.Fatalf("versions after deleting v0: %+v", vs)
	}
	for _, name := range []string{"best", "v0", "A0"} {
		if _, err := s.ResolveArtifact("alice", "p", "dataset", name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after deleting v0: %v", name, err)
		}
	}
	c, _ = s.ArtifactCollection("alice", "p", "dataset")
	if c.Live != 1 || fmt.Sprint(c.Aliases) != "map[latest:A1]" {
		t.Fatalf("collection after deleting v0: %+v", c)
	}
	// ... and from the portfolio: latest falls back to the newest live link.
	if c, _ := s.ArtifactCollection("bob", "q", "reg"); c.Live != 1 {
		t.Fatalf("portfolio after deleting A0: %+v", c)
	}
	if v, err := s.ResolveArtifact("bob", "q", "reg", "latest"); err != nil || v.ID != "A1" {
		t.Fatalf("reg:latest after deleting A0: %q %v", v.ID, err)
	}
	if _, err := s.ResolveArtifact("bob", "q", "reg", "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reg:v1 after deleting A0: %v", err)
	}
	if v, _ := s.ArtifactByID("A0"); v.State != ArtifactDeleted || len(v.Aliases) != 0 || v.DeletedAt == nil {
		t.Fatalf("A0 %+v", v)
	}
}

// TestArtifactDigestReplay: artifacts are part of the read model's digest,
// and a read model fed in small batches equals one replayed in one go.
func TestArtifactDigestReplay(t *testing.T) {
	log := artifactLog(t)
	live := mustOpen(t, Options{InMemory: true})
	for i := 0; i < len(log); i += 2 {
		if _, err := live.ReplayTo(t.Context(), sliceSource(log, 1), uint64(min(i+2, len(log))), nil); err != nil {
			t.Fatal(err)
		}
	}
	rebuilt := mustOpen(t, Options{InMemory: true})
	if _, err := rebuilt.ReplayTo(t.Context(), sliceSource(log, 1000), 0, nil); err != nil {
		t.Fatal(err)
	}
	a, _ := live.Digest()
	b, _ := rebuilt.Digest()
	if a != b {
		t.Fatalf("live %+v, rebuilt %+v", a, b)
	}
	short := mustOpen(t, Options{InMemory: true})
	if _, err := short.ReplayTo(t.Context(), sliceSource(log, 1000), uint64(len(log)-1), nil); err != nil {
		t.Fatal(err)
	}
	// The last event (an artifact deletion) changes the digest.
	if c, _ := short.Digest(); c.Digest == a.Digest {
		t.Fatal("the artifact deletion did not change the digest")
	}
}
