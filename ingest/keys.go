package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// NewAPIKey returns a fresh API key: "lb-" and 48 hex characters (192 random
// bits), which W&B's clients accept (at least 40 characters after the
// prefix).
func NewAPIKey() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "lb-" + hex.EncodeToString(b)
}

// ValidateAPIKey checks a key handed in from outside (LOGBOOK_ADMIN_API_KEY):
// an optional "prefix-" and at least 40 characters of [A-Za-z0-9_-].
func ValidateAPIKey(key string) error {
	rest := key
	if _, after, ok := strings.Cut(key, "-"); ok {
		rest = after
	}
	if len(rest) < 40 {
		return fmt.Errorf("API key must have at least 40 characters after an optional 'prefix-' (W&B clients refuse shorter keys)")
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("API key may contain only letters, digits, '_' and '-'")
		}
	}
	return nil
}
