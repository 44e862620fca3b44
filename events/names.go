package events

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on names and payloads. They are checked at the edge and again by the
// policy, so nothing oversized reaches the log.
const (
	MaxNameLen       = 64
	MaxRunNameLen    = 128
	MaxMetricKeyLen  = 256
	MaxTagLen        = 64
	MaxTags          = 100
	MaxConfigBytes   = 256 << 10
	MaxConfigDepth   = 16
	MaxRowsPerBatch  = 10000
	MaxMetricsPerRow = 2000
	MaxNotesLen      = 4096
	MaxEmailLen      = 254
)

// NameError explains why a name was refused, in words a person can act on.
type NameError struct {
	Kind, Name, Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Kind, e.Name, e.Reason)
}

// ValidateEntity checks a user, team or service-account name. Entity names
// are subject tokens: lower-case letters, digits, '-' and '_', starting with a
// letter or digit, at most 64 characters.
func ValidateEntity(name string) error {
	return validateToken("entity", name, MaxNameLen, false, false)
}

// ValidateProject checks a project name: letters, digits, '-', '_' and '.'
// (W&B accepts dots: "resnet.v2"), starting with a letter or digit, at most
// 64 characters. Subjects carry it through SubjectToken, which escapes the
// dot (a NATS subject separator).
func ValidateProject(name string) error {
	return validateToken("project", name, MaxNameLen, true, true)
}

// ValidateRunID checks a run id: 1 to 64 letters, digits, '-', '_' or '.',
// starting with a letter or digit. W&B style ids such as "7c88ci0d",
// "exp.1" and ULIDs pass.
func ValidateRunID(id string) error {
	return validateToken("run id", id, MaxNameLen, true, true)
}

func validateToken(kind, name string, max int, upper, dot bool) error {
	if name == "" {
		return &NameError{kind, name, "must not be empty"}
	}
	if len(name) > max {
		return &NameError{kind, name, fmt.Sprintf("must be at most %d characters", max)}
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || upper && r >= 'A' && r <= 'Z'
		if !ok && i > 0 && (r == '-' || r == '_' || dot && r == '.') {
			ok = true
		}
		if !ok {
			allowed := "lower-case letters, digits, '-' and '_'"
			if upper {
				allowed = "letters, digits, '-' and '_'"
			}
			if dot {
				allowed = "letters, digits, '-', '_' and '.'"
			}
			return &NameError{kind, name, fmt.Sprintf("may contain only %s, and must start with a letter or digit (found %q at position %d)", allowed, r, i)}
		}
	}
	return nil
}

// ValidateRunName checks a run's display name: 1 to 128 printable characters.
func ValidateRunName(name string) error {
	return validatePrintable("run name", name, MaxRunNameLen)
}

// ValidateMetricKey checks a metric name: 1 to 256 printable characters,
// '/' and '.' allowed ("train/loss"). Keys starting with '_' are reserved for
// W&B's own bookkeeping (_step, _runtime, _timestamp).
func ValidateMetricKey(key string) error {
	if err := validatePrintable("metric key", key, MaxMetricKeyLen); err != nil {
		return err
	}
	if strings.HasPrefix(key, "_") {
		return &NameError{"metric key", key, "names starting with '_' are reserved"}
	}
	return nil
}

// ValidateTag checks a tag: 1 to 64 printable characters.
func ValidateTag(tag string) error {
	return validatePrintable("tag", tag, MaxTagLen)
}

// ValidateEmail checks an email address.
func ValidateEmail(email string) error {
	if email == "" || len(email) > MaxEmailLen {
		return &NameError{"email", email, fmt.Sprintf("must be 1 to %d characters", MaxEmailLen)}
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return &NameError{"email", email, "is not an email address like name@example.com"}
	}
	return nil
}

func validatePrintable(kind, s string, max int) error {
	if s == "" {
		return &NameError{kind, s, "must not be empty"}
	}
	if !utf8.ValidString(s) {
		return &NameError{kind, s, "must be valid UTF-8"}
	}
	if n := utf8.RuneCountInString(s); n > max {
		return &NameError{kind, s, fmt.Sprintf("must be at most %d characters (has %d)", max, n)}
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return &NameError{kind, s, fmt.Sprintf("must not contain control or non-printable characters (found %U)", r)}
		}
	}
	if strings.TrimSpace(s) != s {
		return &NameError{kind, s, "must not start or end with spaces"}
	}
	return nil
}
