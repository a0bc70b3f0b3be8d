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

package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net/url"
	"time"
)

// DPoPKey is a client's DPoP key (RFC 9449): it signs one fresh proof per request. It
// is safe for concurrent use. Keep the private key where the refresh token is kept, or
// better, only in memory: a DPoP-bound refresh token is useless without it.
type DPoPKey struct {
	key  crypto.Signer
	alg  string
	jwk  json.RawMessage // the public key as a JWK (the proof's "jwk" header)
	jkt  string          // RFC 7638 SHA-256 thumbprint
	hash func() hash.Hash
	size int // ECDSA: bytes per coordinate
}

// GenerateDPoPKey returns a new P-256 (ES256) key.
func GenerateDPoPKey() (*DPoPKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewDPoPKey(k)
}

// NewDPoPKey wraps a private key: *ecdsa.PrivateKey on P-256, P-384 or P-521 (ES256,
// ES384, ES512), ed25519.PrivateKey (EdDSA) or *rsa.PrivateKey of at least 2048 bits
// (RS256).
func NewDPoPKey(key crypto.Signer) (*DPoPKey, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	d := &DPoPKey{key: key}
	var canonical string // RFC 7638: the required members, sorted, no whitespace
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var crv string
		switch k.Curve {
		case elliptic.P256():
			crv, d.alg, d.hash, d.size = "P-256", "ES256", sha256.New, 32
		case elliptic.P384():
			crv, d.alg, d.hash, d.size = "P-384", "ES384", sha512.New384, 48
		case elliptic.P521():
			crv, d.alg, d.hash, d.size = "P-521", "ES512", sha512.New, 66
		default:
			return nil, errors.New("keyward client: DPoP keys on this curve are not supported (P-256, P-384, P-521)")
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil, fmt.Errorf("keyward client: DPoP key: %w", err)
		}
		x, y := b64(pub[1:1+d.size]), b64(pub[1+d.size:])
		canonical = `{"crv":"` + crv + `","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	case ed25519.PrivateKey:
		d.alg = "EdDSA"
		canonical = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k.Public().(ed25519.PublicKey)) + `"}`
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("keyward client: RSA DPoP keys must have at least 2048 bits")
		}
		d.alg, d.hash = "RS256", sha256.New
		e := big.NewInt(int64(k.E)).Bytes()
		canonical = `{"e":"` + b64(e) + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	default:
		return nil, fmt.Errorf("keyward client: DPoP keys of type %T are not supported (ECDSA, Ed25519, RSA)", key)
	}
	sum := sha256.Sum256([]byte(canonical))
	d.jwk, d.jkt = json.RawMessage(canonical), b64(sum[:])
	return d, nil
}

// Thumbprint is the key's RFC 7638 SHA-256 thumbprint, base64url: the dpop_jkt a login
// service passes when it mints a DPoP-bound session, and the cnf.jkt of bound tokens.
func (d *DPoPKey) Thumbprint() string { return d.jkt }

// Algorithm is the JWS algorithm of the key's proofs.
func (d *DPoPKey) Algorithm() string { return d.alg }

// Proof returns a DPoP proof JWT (RFC 9449 §4.2) for a request: htm is the method, htu
// the request URL without query and fragment, iat now, a fresh random jti, nonce when the
// server gave one, and ath (the SHA-256 of the access token) when accessToken is set.
func (d *DPoPKey) Proof(method string, target *url.URL, nonce, accessToken string, now time.Time) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	htu := *target
	htu.RawQuery, htu.ForceQuery, htu.Fragment, htu.RawFragment, htu.User = "", false, "", "", nil
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce,omitempty"`
		ATH   string `json:"ath,omitempty"`
	}{JTI: b64(jti), HTM: method, HTU: htu.String(), IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims.ATH = b64(sum[:])
	}
	header := struct {
		Typ string          `json:"typ"`
		Alg string          `json:"alg"`
		JWK json.RawMessage `json:"jwk"`
	}{"dpop+jwt", d.alg, d.jwk}
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64(h) + "." + b64(p)
	sig, err := d.sign([]byte(input))
	if err != nil {
		return "", fmt.Errorf("keyward client: signing a DPoP proof: %w", err)
	}
	return input + "." + b64(sig), nil
}

// sign signs a JWS signing input with the key's algorithm (RFC 7518 §3).
func (d *DPoPKey) sign(input []byte) ([]byte, error) {
	switch k := d.key.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input), nil
	case *ecdsa.PrivateKey:
		h := d.hash()
		h.Write(input)
		r, s, err := ecdsa.Sign(rand.Reader, k, h.Sum(nil))
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 2*d.size) // R || S, fixed size
		r.FillBytes(sig[:d.size])
		s.FillBytes(sig[d.size:])
		return sig, nil
	case *rsa.PrivateKey:
		h := d.hash()
		h.Write(input)
		return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h.Sum(nil))
	}
	return nil, errors.New("unsupported key")
}
