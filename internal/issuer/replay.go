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
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ReplayKeySize is the size of a replay key: AES-256.
const ReplayKeySize = 32

// sealVersion is the first byte of every sealed replay record.
const sealVersion = 1

// Sealer seals the token responses kept for the replay window (RotateRequest.Replay)
// with AES-256-GCM, so the store (a file, a database) never holds a usable token. Every
// replica must hold the same keys: a response sealed by one replica is opened by another.
// The first key seals; every key opens, so keys can be rotated by prepending a new one,
// and the old one dropped after the longest replay window (1m).
type Sealer struct {
	keys     []sealKey
	nonceKey []byte
}

type sealKey struct {
	id   [4]byte
	aead cipher.AEAD
}

// NewSealer returns a Sealer for 32-byte keys; the first seals.
func NewSealer(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no replay key")
	}
	s := &Sealer{}
	seen := map[[4]byte]bool{}
	for i, k := range keys {
		if len(k) != ReplayKeySize {
			return nil, fmt.Errorf("replay key %d is %d bytes, want %d", i+1, len(k), ReplayKeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte("keyward replay key id\x00"), k...))
		var id [4]byte
		copy(id[:], sum[:])
		if seen[id] {
			return nil, fmt.Errorf("replay key %d is listed twice", i+1)
		}
		seen[id] = true
		s.keys = append(s.keys, sealKey{id: id, aead: aead})
	}
	m := hmac.New(sha256.New, keys[0])
	m.Write([]byte("keyward dpop nonce key v1"))
	s.nonceKey = m.Sum(nil)
	return s, nil
}

// ParseReplayKeys reads a replay key file: one key per line, 32 bytes as 64 hex digits
// or as base64 (standard or URL alphabet, padded or not); blank lines and lines starting
// with # are ignored. The first key seals. Anything else fails (never a weaker key).
func ParseReplayKeys(data []byte) (*Sealer, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := decodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("replay key file line %d: %w", line, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the replay key file: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("the replay key file holds no key")
	}
	return NewSealer(keys...)
}

func decodeKey(s string) ([]byte, error) {
	if len(s) == 2*ReplayKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.Strict().DecodeString(s); err == nil && len(k) == ReplayKeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("not a %d-byte key in hex or base64", ReplayKeySize)
}

// NewReplayKey returns a fresh key in the file format (hex).
func NewReplayKey() string {
	k := make([]byte, ReplayKeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(k)
}

// Seal encrypts plaintext bound to aad (the presented token's hash): a record sealed for
// one token never opens for another.
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	k := s.keys[0]
	out := make([]byte, 0, 1+len(k.id)+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out = append(out, sealVersion)
	out = append(out, k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad)
}

// Open decrypts a sealed record; any tampering, a wrong aad or an unknown key fails.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 5 || sealed[0] != sealVersion {
		return nil, errors.New("not a sealed replay record")
	}
	var id [4]byte
	copy(id[:], sealed[1:5])
	for _, k := range s.keys {
		if k.id != id {
			continue
		}
		rest := sealed[5:]
		if len(rest) < k.aead.NonceSize()+k.aead.Overhead() {
			return nil, errors.New("sealed replay record is truncated")
		}
		pt, err := k.aead.Open(nil, rest[:k.aead.NonceSize()], rest[k.aead.NonceSize():], aad)
		if err != nil {
			return nil, errors.New("sealed replay record does not authenticate")
		}
		return pt, nil
	}
	return nil, errors.New("sealed replay record is under an unknown key")
}

// dpopNonceKey is the key of the DPoP server nonces, derived from the first replay key,
// so that every replica issues and accepts the same nonces.
func (s *Sealer) dpopNonceKey() []byte { return s.nonceKey }
