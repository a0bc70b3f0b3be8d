/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package issuer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// Refresh tokens are opaque: a prefix (so secret scanners can spot a leaked one) and 256
// bits from crypto/rand in unpadded base64url. Only their SHA-256 is stored.
const (
	refreshPrefix     = "kwrt_"
	refreshRandom     = 32
	refreshEncodedLen = 43 // base64url of 32 bytes, unpadded
	refreshTokenLen   = len(refreshPrefix) + refreshEncodedLen
)

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newRefreshToken returns a fresh refresh token.
func newRefreshToken() string { return refreshPrefix + randomString(refreshRandom) }

// newFamilyID returns a session id (the sid of the family's access tokens): 128 bits.
func newFamilyID() string { return randomString(16) }

// newJTI returns an access-token id: 128 bits.
func newJTI() string { return randomString(16) }

// isRefreshToken reports whether s has the exact shape of a refresh token. Anything
// else is refused before the store is consulted.
func isRefreshToken(s string) bool {
	if len(s) != refreshTokenLen || s[:len(refreshPrefix)] != refreshPrefix {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(refreshPrefix):])
	return err == nil && len(b) == refreshRandom
}

// fingerprint is the first 12 hex digits of the SHA-256 of a token, as the verifier's
// audit records write it (internal/sidecar.TokenFingerprint): enough to correlate records,
// never enough to recover or replay the token. For a refresh token it is a prefix of the
// hash the store keeps.
func fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
