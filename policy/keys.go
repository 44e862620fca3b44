package policy

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashKey returns the hash under which an API key is stored. Keys carry at
// least 128 random bits, so a plain SHA-256 cannot be brute-forced; the raw
// key is never stored.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
