package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// envelope is the wire form of an Event.
type envelope struct {
	ID      string          `json:"id"`
	Type    Type            `json:"type"`
	Version int             `json:"v"`
	Entity  string          `json:"entity"`
	Project string          `json:"project,omitempty"`
	Run     string          `json:"run,omitempty"`
	Actor   string          `json:"actor"`
	Time    time.Time       `json:"time"`
	Cause   string          `json:"cause,omitempty"`
	Payload json.RawMessage `json:"payload"`
}

// Upcaster turns the JSON payload of version v into that of version v+1.
type Upcaster func(payload json.RawMessage) (json.RawMessage, error)

type typeInfo struct {
	version   int          // current version
	goType    reflect.Type // the payload type of the current version
	decode    func([]byte) (Payload, error)
	upcasters map[int]Upcaster // from version k to k+1
}

// registry is the one table of event types: name, current version, decoder
// and upcasters from older versions.
var registry = map[Type]*typeInfo{}

func register[P Payload](version int, up map[int]Upcaster) {
	var zero P
	registry[zero.EventType()] = &typeInfo{
		version:   version,
		goType:    reflect.TypeOf(zero),
		upcasters: up,
		decode: func(b []byte) (Payload, error) {
			var p P
			if err := json.Unmarshal(b, &p); err != nil {
				return nil, err
			}
			return p, nil
		},
	}
}

func init() {
	register[UserCreatedV1](1, nil)
	register[KeyCreatedV1](1, nil)
	register[KeyRevokedV1](1, nil)
	register[TeamCreatedV1](1, nil)
	register[TeamMemberJoinedV1](1, nil)
	register[ProjectCreatedV1](1, nil)
	register[MemberInvitedV1](1, nil)
	register[MemberJoinedV1](1, nil)
	register[InviteRevokedV2](2, map[int]Upcaster{1: upcastInviteRevokedV1})
	register[RoleChangedV1](1, nil)
	register[MemberRemovedV1](1, nil)
	register[ProjectDeletedV1](1, nil)
	register[RunStartedV1](1, nil)
	register[RunResumedV1](1, nil)
	register[RunUpdatedV1](1, nil)
	register[MetricsLoggedV2](2, map[int]Upcaster{1: upcastMetricsV1})
	register[SummaryUpdatedV1](1, nil)
	register[RunFinishedV1](1, nil)
	register[RunCrashedV1](1, nil)
	register[RunDeletedV1](1, nil)
	register[RunLinesWrittenV1](1, nil)
	register[RunHeartbeatRecordedV1](1, nil)
	register[RunStreamReceivedV1](1, nil)
	register[ArtifactCreatedV1](1, nil)
	register[ArtifactCommittedV1](1, nil)
	register[ArtifactAliasesAddedV1](1, nil)
	register[ArtifactUsedV1](1, nil)
	register[EventQuarantinedV1](1, nil)
	register[ArtifactDeletedV1](1, nil)
	register[ArtifactLinkedV1](1, nil)
}

// upcastInviteRevokedV1: v1 {"email": as typed} -> v2 {"email": lower-case,
// "role": omitted (v1 did not record it)}.
func upcastInviteRevokedV1(payload json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal(payload, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(InviteRevokedV2{Email: strings.ToLower(v1.Email)})
}

// Types lists every registered event type.
func Types() []Type {
	out := make([]Type, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	return out
}

// CurrentVersion returns the schema version new events of t are written with.
func CurrentVersion(t Type) int {
	if ti := registry[t]; ti != nil {
		return ti.version
	}
	return 0
}

// ErrUnknownType is returned when decoding an event type nobody registered.
var ErrUnknownType = errors.New("unknown event type")

// Encode returns the JSON encoding of e. The payload's type decides e.Type and
// the current version is written.
func Encode(e Event) ([]byte, error) {
	if e.Payload == nil {
		return nil, fmt.Errorf("encode event %s: no payload", e.ID)
	}
	t := e.Payload.EventType()
	ti := registry[t]
	if ti == nil {
		return nil, fmt.Errorf("encode event %s: %w %q", e.ID, ErrUnknownType, t)
	}
	if pl, ok := e.Payload.(MetricsLoggedV2); ok {
		if b, ok := appendMetricsEvent(make([]byte, 0, 512+pl.jsonSize()), e, pl); ok {
			return b, nil
		}
	}
	if reflect.TypeOf(e.Payload) != ti.goType {
		// An old version's payload (MetricsLoggedV1) would be written
		// under the current version's number.
		return nil, fmt.Errorf("encode event %s: payload %T is not the current version of %s (%s)", e.ID, e.Payload, t, ti.goType)
	}
	p, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", t, err)
	}
	return json.Marshal(envelope{
		ID: e.ID, Type: t, Version: ti.version, Entity: e.Entity, Project: e.Project,
		Run: e.Run, Actor: e.Actor, Time: e.Time.UTC(), Cause: e.Cause, Payload: p,
	})
}

// Decode parses an encoded event, upcasting older versions of its payload to
// the current one.
func Decode(b []byte) (Event, error) {
	if e, ok := decodeMetrics(b); ok {
		return e, nil
	}
	return decodeGeneric(b)
}

// decodeGeneric is Decode with encoding/json and the upcasters, for any
// type.
func decodeGeneric(b []byte) (Event, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ti := registry[env.Type]
	if ti == nil {
		return Event{}, fmt.Errorf("decode event %s: %w %q", env.ID, ErrUnknownType, env.Type)
	}
	if env.Version < 1 || env.Version > ti.version {
		return Event{}, fmt.Errorf("decode event %s: %s version %d not supported (current is %d)", env.ID, env.Type, env.Version, ti.version)
	}
	payload := env.Payload
	if len(payload) == 0 {
		return Event{}, fmt.Errorf("decode event %s: no payload", env.ID)
	}
	for v := env.Version; v < ti.version; v++ {
		up := ti.upcasters[v]
		if up == nil {
			return Event{}, fmt.Errorf("decode event %s: no upcaster for %s v%d", env.ID, env.Type, v)
		}
		var err error
		if payload, err = up(payload); err != nil {
			return Event{}, fmt.Errorf("upcast %s v%d of event %s: %w", env.Type, v, env.ID, err)
		}
	}
	p, err := ti.decode(payload)
	if err != nil {
		return Event{}, fmt.Errorf("decode %s payload of event %s: %w", env.Type, env.ID, err)
	}
	return Event{
		ID: env.ID, Type: env.Type, Version: ti.version, Entity: env.Entity, Project: env.Project,
		Run: env.Run, Actor: env.Actor, Time: env.Time, Cause: env.Cause, Payload: p,
	}, nil
}
