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

// Package mint signs JWTs with a SigningKey's active key, read from the SigningKey's
// Secret: the token service, `kubectl keyward mint`, the demo and the end-to-end tests all
// sign through it. It is pure (no client): callers hand it the Secret's data.
package mint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
	"github.com/keyward-dev/keyward/internal/rotation"
)

// Keys of the SigningKey Secret (the controller writes them; see docs/api.md).
const (
	SecretKeysKey  = "jwks.json"  // the private JWK set
	SecretStateKey = "state.json" // the key lifecycle records
)

// Signer signs with one private key under its kid.
type Signer struct {
	kid  string
	alg  string
	priv crypto.Signer
}

// KID is the key id written into every header.
func (s *Signer) KID() string { return s.kid }

// Algorithm is the JWS alg.
func (s *Signer) Algorithm() string { return s.alg }

// FromSecret returns a Signer for the key the Secret's state marks Active. It fails when
// the Secret is malformed, holds no active key, or the active key's private half is missing.
func FromSecret(data map[string][]byte) (*Signer, error) {
	var state struct {
		Keys []rotation.Key `json:"keys"`
	}
	if err := json.Unmarshal(data[SecretStateKey], &state); err != nil {
		return nil, fmt.Errorf("%s: %w", SecretStateKey, err)
	}
	active := ""
	for _, k := range state.Keys {
		if k.State == rotation.StateActive {
			active = k.KID
		}
	}
	if active == "" {
		return nil, errors.New("the SigningKey has no active key")
	}
	keys, err := jwks.ParseSet(data[SecretKeysKey], true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SecretKeysKey, err)
	}
	for _, k := range keys {
		if kid, _ := k.KeyID(); kid == active {
			return New(k)
		}
	}
	return nil, fmt.Errorf("the active key %s is not in %s", active, SecretKeysKey)
}

// New returns a Signer for a private JWK with kid and alg set (as internal/jwks makes them).
func New(k jwk.Key) (*Signer, error) {
	kid, ok := k.KeyID()
	if !ok || kid == "" {
		return nil, errors.New("the key has no kid")
	}
	a, ok := k.Algorithm()
	if !ok {
		return nil, fmt.Errorf("key %s has no alg", kid)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil, fmt.Errorf("key %s: %w", kid, err)
	}
	priv, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %s is not a private key", kid)
	}
	s := &Signer{kid: kid, alg: a.String(), priv: priv}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Signer) check() error {
	switch p := s.priv.(type) {
	case *ecdsa.PrivateKey:
		if (s.alg == jwks.AlgES256 && p.Curve.Params().BitSize == 256) || (s.alg == jwks.AlgES384 && p.Curve.Params().BitSize == 384) {
			return nil
		}
	case ed25519.PrivateKey:
		if s.alg == jwks.AlgEdDSA {
			return nil
		}
	case *rsa.PrivateKey:
		if s.alg == jwks.AlgRS256 || s.alg == jwks.AlgPS256 {
			return nil
		}
	}
	return fmt.Errorf("key %s: alg %q does not fit a %T", s.kid, s.alg, s.priv)
}

// Sign returns the compact JWS of claims with header {alg, kid, typ}. typ may be empty.
func (s *Signer) Sign(claims any, typ string) (string, error) {
	h := map[string]string{"alg": s.alg, "kid": s.kid}
	if typ != "" {
		h["typ"] = typ
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding the claims: %w", err)
	}
	input := b64(hb) + "." + b64(cb)
	sig, err := s.signature([]byte(input))
	if err != nil {
		return "", fmt.Errorf("signing with %s: %w", s.kid, err)
	}
	return input + "." + b64(sig), nil
}

func (s *Signer) signature(input []byte) ([]byte, error) {
	switch s.alg {
	case jwks.AlgES256, jwks.AlgES384:
		p := s.priv.(*ecdsa.PrivateKey)
		var digest []byte
		if s.alg == jwks.AlgES256 {
			d := sha256.Sum256(input)
			digest = d[:]
		} else {
			d := sha512.Sum384(input)
			digest = d[:]
		}
		r, sv, err := ecdsa.Sign(rand.Reader, p, digest)
		if err != nil {
			return nil, err
		}
		size := (p.Curve.Params().BitSize + 7) / 8
		sig := make([]byte, 2*size) // JWS wants r||s, fixed width (RFC 7518 §3.4)
		r.FillBytes(sig[:size])
		sv.FillBytes(sig[size:])
		return sig, nil
	case jwks.AlgEdDSA:
		return ed25519.Sign(s.priv.(ed25519.PrivateKey), input), nil
	case jwks.AlgRS256:
		d := sha256.Sum256(input)
		return rsa.SignPKCS1v15(rand.Reader, s.priv.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case jwks.AlgPS256:
		d := sha256.Sum256(input)
		return rsa.SignPSS(rand.Reader, s.priv.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	return nil, fmt.Errorf("unsupported alg %q", s.alg)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
