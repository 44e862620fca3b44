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
	return project
}

// Proposal is the subject a user's proposal is published on.
func (s Subjects) Proposal(user string, e Event) string {
	return fmt.Sprintf("%s.in.%s.%s.%s.%s", s.Prefix, user, e.Entity, projectToken(e.Project), typeOf(e))
}

// ProposalsOf matches every proposal of one user: what that user's
// credential may publish to.
func (s Subjects) ProposalsOf(user string) string { return s.Prefix + ".in." + user + ".>" }

// AllProposals matches every proposal.
func (s Subjects) AllProposals() string { return s.Prefix + ".in.>" }

// Event is the subject an accepted event is stored on.
func (s Subjects) Event(e Event) string {
	return fmt.Sprintf("%s.ev.%s.%s.%s", s.Prefix, e.Entity, projectToken(e.Project), typeOf(e))
}

// Aggregate matches every event of one project (or, with project "", of one
// entity itself): the subject filter of optimistic-concurrency checks.
func (s Subjects) Aggregate(entity, project string) string {
	return fmt.Sprintf("%s.ev.%s.%s.>", s.Prefix, entity, projectToken(project))
}

// EntityEvents matches the entity-level events (users, keys, teams).
func (s Subjects) EntityEvents() string { return s.Prefix + ".ev.*." + EntityToken + ".>" }

// AllEvents matches every accepted event.
func (s Subjects) AllEvents() string { return s.Prefix + ".ev.>" }

// Rejection is the subject a rejection is recorded on.
func (s Subjects) Rejection(entity, project string) string {
	return fmt.Sprintf("%s.rej.%s.%s", s.Prefix, entity, projectToken(project))
}

// AllRejections matches every rejection.
func (s Subjects) AllRejections() string { return s.Prefix + ".rej.>" }

// Decided is the core-NATS subject on which the outcome of a proposal is
// announced to whoever waits for it synchronously.
func (s Subjects) Decided(proposalID string) string { return s.Prefix + ".decided." + proposalID }

// ParseProposal splits a proposal subject into its user, entity, project and
// type tokens. Project is "" for entity-level proposals.
func (s Subjects) ParseProposal(subject string) (user, entity, project string, typ Type, err error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".in.")
	if !ok {
		return "", "", "", "", fmt.Errorf("subject %q is not a proposal subject", subject)
	}
	tok := strings.Split(rest, ".")
	if len(tok) != 4 {
		return "", "", "", "", fmt.Errorf("proposal subject %q must have 4 tokens after %s.in", subject, s.Prefix)
	}
	project = tok[2]
	if project == EntityToken {
		project = ""
	}
	return tok[0], tok[1], project, Type(tok[3]), nil
}
