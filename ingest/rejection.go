package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/logbook/logbook/events"
)

// Bounds of what a rejection keeps of its proposal: the rejections stream
// feeds the audit trail, which must stay readable by any JSON parser
// (Python's refuses about 1,000 levels of nesting) and small. A refused
// proposal beyond them is kept as a summary.
const (
	MaxRejectedProposalBytes = 16 << 10
	MaxRejectedProposalDepth = 32
	rejectedExcerptBytes     = 512
)

// ProposalSummary stands for a refused proposal too large or too deeply
// nested to keep whole.
type ProposalSummary struct {
	ID      string      `json:"id,omitempty"`
	Type    events.Type `json:"type,omitempty"`
	Entity  string      `json:"entity,omitempty"`
	Project string      `json:"project,omitempty"`
	Run     string      `json:"run,omitempty"`
	Bytes   int         `json:"bytes"`
	Depth   int         `json:"depth"`
	SHA256  string      `json:"sha256"`
	// Excerpt is the start of the encoded proposal, as text.
	Excerpt string `json:"excerpt"`
}

// rejectedProposal is what a rejection record keeps of proposal p encoded
// as body: body itself, or a summary when it is out of bounds.
func rejectedProposal(p events.Event, body []byte) (json.RawMessage, *ProposalSummary) {
	depth := jsonDepth(body)
	if len(body) <= MaxRejectedProposalBytes && depth <= MaxRejectedProposalDepth {
		return body, nil
	}
	sum := sha256.Sum256(body)
	ex := body[:min(len(body), rejectedExcerptBytes)]
	for len(ex) > 0 && !utf8.Valid(ex) {
		ex = ex[:len(ex)-1] // never cut a character in two
	}
	return nil, &ProposalSummary{ID: p.ID, Type: p.Type, Entity: p.Entity, Project: p.Project, Run: p.Run,
		Bytes: len(body), Depth: depth, SHA256: hex.EncodeToString(sum[:]), Excerpt: string(ex)}
}

// jsonDepth is the deepest nesting of objects and arrays in a JSON document.
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > deepest {
				deepest = depth
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}
