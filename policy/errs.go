package policy

import "github.com/logbook/logbook/errs"

// Err is the rejection as Logbook's coded error (the rejection code stays
// the error's code, so API clients keep branching on it).
func (r *Rejection) Err() *errs.Error {
	return errs.New(KindOf(r.Code), string(r.Code), "%s", r.Message)
}

// KindOf classifies a rejection code.
func KindOf(c Code) errs.Kind {
	switch c {
	case CodeUnauthenticated:
		return errs.Unauthenticated
	case CodeForbidden, CodeRunNotYours:
		return errs.Forbidden
	case CodeProjectNotFound, CodeRunNotFound, CodeUnknownUser, CodeUnknownEntity, CodeInviteNotFound, CodeKeyNotFound,
		CodeArtifactNotFound:
		return errs.NotFound
	case CodeEntityExists, CodeEmailTaken, CodeProjectExists, CodeAlreadyMember, CodeNotMember, CodeLastAdmin,
		CodeRunExists, CodeRunFinished, CodeArtifactExists, CodeArtifactTypeMismatch, CodeArtifactHasAliases,
		CodeAlreadyQuarantined:
		return errs.Conflict
	case CodeEventUnreadable:
		return errs.Unavailable
	}
	return errs.Invalid
}
