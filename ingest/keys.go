package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/logbook/logbook/policy"
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

// KeyRef names the active key with this hash: its user and key id.
func (s *Service) KeyRef(hash string) (user, keyID string, ok bool) {
	s.Decider.View(func(st *policy.State) {
		u, found := st.UserByKeyHash(hash)
		if !found {
			return
		}
		for id, h := range u.Keys {
			if h == hash {
				user, keyID, ok = u.Username, id, true
				return
			}
		}
	})
	return user, keyID, ok
}

// KeyActive reports whether user's key keyID is still active (not revoked).
func (s *Service) KeyActive(user, keyID string) bool {
	active := false
	s.Decider.View(func(st *policy.State) {
		if u := st.Users[user]; u != nil {
			_, active = u.Keys[keyID]
		}
	})
	return active
}
