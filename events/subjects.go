package events

import (
	"fmt"
	"strings"
)

// Subjects carry the routing keys, so consumers filter without decoding.
//
//	proposals:  <prefix>.in.<user>.<entity>.<project>.<type>
//	events:     <prefix>.ev.<entity>.<project>.<type>
//	rejections: <prefix>.rej.<entity>.<project>
//
// Events about an entity itself (users, keys, teams) use the project token
// "_", which no project name can take (project names start with a letter or
// digit).
type Subjects struct {
	Prefix string
}

// EntityToken is the project token of entity-level events.
const EntityToken = "_"

// DefaultPrefix is the subject prefix unless configured otherwise.
const DefaultPrefix = "lb"

func typeOf(e Event) Type {
	if e.Type == "" && e.Payload != nil {
		return e.Payload.EventType()
	}
	return e.Type
}

func projectToken(project string) string {
	if project == "" {
		return EntityToken
	}
	return SubjectToken(project)
}

// SubjectToken encodes a name as one subject token: every byte other than
// a letter, a digit, '-' or '_' becomes %XX (upper-case hex), so a dot in a
// project name ("resnet.v2" -> "resnet%2Ev2") does not split the subject.
// Names made only of those characters (every name before dots were
// allowed) are their own token: the subjects of old events stay valid. The
// name itself is kept unchanged in the event's payload and envelope.
func SubjectToken(name string) string {
	for i := 0; i < len(name); i++ {
		if !plainToken(name[i]) {
			return escapeToken(name)
		}
	}
	return name
}

func plainToken(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func escapeToken(name string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(name)+8)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plainToken(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// ParseSubjectToken reverses SubjectToken.
func ParseSubjectToken(tok string) (string, error) {
	if !strings.Contains(tok, "%") {
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			b = append(b, tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("subject token %q: truncated escape", tok)
		}
		var v byte
		for _, c := range []byte{tok[i+1], tok[i+2]} {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'A' && c <= 'F':
				v = v<<4 | (c - 'A' + 10)
			default:
				return "", fmt.Errorf("subject token %q: bad escape", tok)
			}
		}
		b = append(b, v)
		i += 2
	}
	return string(b), nil
}

// Proposal is the subject a user's proposal is published on.
func (s Subjects) Proposal(user string, e Event) string {
	return fmt.Sprintf("%s.in.%s.%s.%s.%s", s.Prefix, SubjectToken(user), SubjectToken(e.Entity), projectToken(e.Project), typeOf(e))
}

// ProposalsOf matches every proposal of one user: what that user's
// credential may publish to.
func (s Subjects) ProposalsOf(user string) string {
	return s.Prefix + ".in." + SubjectToken(user) + ".>"
}

// Bulk is the subject of a metric batch in the inbox's bulk lane: the
// proposal's subject with "bulk" for "in" and the run as a fifth token
// (so the decider can ask whether a run still has batches waiting). Only
// Logbook's own ingest publishes there (a user credential may publish on
// ProposalsOf only).
func (s Subjects) Bulk(user string, e Event) string {
	return fmt.Sprintf("%s.bulk.%s.%s.%s.%s.%s", s.Prefix, SubjectToken(user), SubjectToken(e.Entity), projectToken(e.Project), SubjectToken(e.Run), typeOf(e))
}

// BulkOfRun matches a run's batches in the bulk lane; with run "", every
// batch of the project.
func (s Subjects) BulkOfRun(entity, project, run string) string {
	if run == "" {
		return fmt.Sprintf("%s.bulk.*.%s.%s.>", s.Prefix, SubjectToken(entity), projectToken(project))
	}
	return fmt.Sprintf("%s.bulk.*.%s.%s.%s.*", s.Prefix, SubjectToken(entity), projectToken(project), SubjectToken(run))
}

// AllBulk matches the bulk lane.
func (s Subjects) AllBulk() string { return s.Prefix + ".bulk.>" }

// AllProposals matches every proposal.
func (s Subjects) AllProposals() string { return s.Prefix + ".in.>" }

// Event is the subject an accepted event is stored on.
func (s Subjects) Event(e Event) string {
	return fmt.Sprintf("%s.ev.%s.%s.%s", s.Prefix, SubjectToken(e.Entity), projectToken(e.Project), typeOf(e))
}

// Aggregate matches every event of one project (or, with project "", of one
// entity itself): the subject filter of optimistic-concurrency checks.
func (s Subjects) Aggregate(entity, project string) string {
	return fmt.Sprintf("%s.ev.%s.%s.>", s.Prefix, SubjectToken(entity), projectToken(project))
}

// EntityEvents matches the entity-level events (users, keys, teams).
func (s Subjects) EntityEvents() string { return s.Prefix + ".ev.*." + EntityToken + ".>" }

// AllEvents matches every accepted event.
func (s Subjects) AllEvents() string { return s.Prefix + ".ev.>" }

// Rejection is the subject a rejection is recorded on.
func (s Subjects) Rejection(entity, project string) string {
	return fmt.Sprintf("%s.rej.%s.%s", s.Prefix, SubjectToken(entity), projectToken(project))
}

// EntityRejections matches the rejections of entity-level proposals
// (users, keys, teams) of every entity.
func (s Subjects) EntityRejections() string { return s.Prefix + ".rej.*." + EntityToken }

// AllRejections matches every rejection.
func (s Subjects) AllRejections() string { return s.Prefix + ".rej.>" }

// Decided is the core-NATS subject on which the outcome of a proposal is
// announced to whoever waits for it synchronously.
func (s Subjects) Decided(proposalID string) string { return s.Prefix + ".decided." + proposalID }

// Position is the core-NATS subject on which a projector announces how
// far its read model has folded the log (the ingest edges hold writers
// while it lags; see ingest.Freshness). Only Logbook's components publish
// in their account.
func (s Subjects) Position(projector string) string {
	return s.Prefix + ".pos." + SubjectToken(projector)
}

// Positions matches every projector's announcements.
func (s Subjects) Positions() string { return s.Prefix + ".pos.*" }

// ParseProposal splits a proposal subject into its user, entity, project and
// type tokens. Project is "" for entity-level proposals.
func (s Subjects) ParseProposal(subject string) (user, entity, project string, typ Type, err error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".in.")
	var tok []string
	switch {
	case ok:
		if tok = strings.Split(rest, "."); len(tok) != 4 {
			return "", "", "", "", fmt.Errorf("proposal subject %q must have 4 tokens after %s.in", subject, s.Prefix)
		}
	case strings.HasPrefix(subject, s.Prefix+".bulk."):
		// user.entity.project.run.type (see Bulk): the run is the body's.
		if tok = strings.Split(strings.TrimPrefix(subject, s.Prefix+".bulk."), "."); len(tok) != 5 {
			return "", "", "", "", fmt.Errorf("bulk subject %q must have 5 tokens after %s.bulk", subject, s.Prefix)
		}
		tok = append(tok[:3], tok[4])
	default:
		return "", "", "", "", fmt.Errorf("subject %q is not a proposal subject", subject)
	}
	if project = tok[2]; project == EntityToken {
		project = ""
	} else if project, err = ParseSubjectToken(project); err != nil {
		return "", "", "", "", err
	}
	return tok[0], tok[1], project, Type(tok[3]), nil
}

// Quarantines matches the quarantine decisions (event_quarantined, stored
// on the deciding admin's entity-level subject).
func (s Subjects) Quarantines() string {
	return s.Prefix + ".ev.*." + EntityToken + "." + string(EventQuarantined)
}

// ParseEvent splits an event subject into its entity and project (""
// for entity-level events); ok is false for a subject that is not one.
func (s Subjects) ParseEvent(subject string) (entity, project string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.Prefix+".ev.")
	if !found {
		return "", "", false
	}
	tok := strings.Split(rest, ".")
	if len(tok) != 3 {
		return "", "", false
	}
	if tok[1] == EntityToken {
		return tok[0], "", true
	}
	project, err := ParseSubjectToken(tok[1])
	return tok[0], project, err == nil
}
