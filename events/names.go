package events

import (
	"bytes"
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

// MaxStep is the largest step a row may have: 2^53, the largest integer
// every JSON reader (JavaScript's included) holds exactly, so a step
// survives exports and the web page unchanged, and a run can always log
// after it.
const MaxStep = 1 << 53

// ValidateStep checks a row's step: 0 to MaxStep.
func ValidateStep(step int64) error {
	if step < 0 || step > MaxStep {
		return fmt.Errorf("step must be from 0 to 2^53 = %d (got %d)", int64(MaxStep), step)
	}
	return nil
}

// ValidateLabel checks an optional free-text field such as a run's group
// or job type: at most max characters of valid UTF-8 without control
// characters (NUL, line breaks, ...). Empty is allowed.
func ValidateLabel(kind, s string, max int) error {
	if s == "" {
		return nil
	}
	if !utf8.ValidString(s) {
		return &NameError{kind, s, "must be valid UTF-8"}
	}
	if n := utf8.RuneCountInString(s); n > max {
		return &NameError{kind, s, fmt.Sprintf("must be at most %d characters (has %d)", max, n)}
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return &NameError{kind, s, fmt.Sprintf("must not contain control characters (found %U)", r)}
		}
	}
	return nil
}

// CheckJSONText reports whether a JSON document's text is valid Unicode:
// valid UTF-8, and no \u escape of a lone UTF-16 surrogate. JSON decoders
// (Go's included) silently turn both into U+FFFD, so a metric key or run
// name would be stored as something its writer never sent; Logbook refuses
// them instead, before decoding.
func CheckJSONText(b []byte) error {
	if !utf8.Valid(b) {
		for i := 0; i < len(b); {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Errorf("the body is not valid UTF-8 (byte 0x%02x at offset %d); send text as UTF-8", b[i], i)
			}
			i += n
		}
	}
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			j := bytes.IndexByte(b[i:], '\\')
			if j < 0 {
				break
			}
			if i += j; i+1 >= len(b) {
				break
			}
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character (\\ included)
			continue
		}
		hi, ok := hex4(b, i+2)
		if !ok {
			i++
			continue
		}
		switch {
		case hi >= 0xDC00 && hi <= 0xDFFF:
			return fmt.Errorf("the body has a lone UTF-16 surrogate \\u%04x at offset %d, which is not a character", hi, i)
		case hi >= 0xD800 && hi <= 0xDBFF:
			lo, ok := rune(0), false
			if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				lo, ok = hex4(b, i+8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return fmt.Errorf("the body has a lone UTF-16 surrogate \\u%04x at offset %d, which is not a character", hi, i)
			}
			i += 11
		default:
			i += 5
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
