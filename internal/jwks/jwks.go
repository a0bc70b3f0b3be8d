// Package jwks generates JWT signing keys and encodes and decodes JWK Sets
// (RFC 7517) for Keyward.
//
// Every key this package produces or accepts is an asymmetric signing key for
// one of five JWS algorithms (ES256, ES384, EdDSA with Ed25519, RS256 and
// PS256) whose "kid" is the RFC 7638 SHA-256 thumbprint of its public key.
// Errors never contain key material, so they are safe to log.
package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Supported JWS algorithms.
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256
	AlgES384 = "ES384" // ECDSA P-384 with SHA-384
	AlgEdDSA = "EdDSA" // Ed25519
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	AlgPS256 = "PS256" // RSASSA-PSS with SHA-256
)

// Algorithms returns the supported algorithms, in a fixed order.
func Algorithms() []string {
	return []string{AlgES256, AlgES384, AlgEdDSA, AlgRS256, AlgPS256}
}

// RSA modulus sizes.
const (
	// DefaultRSABits is used by Generate and Profile when rsaBits is 0.
	DefaultRSABits = 2048
	// MinRSABits is the smallest RSA modulus ParseSet accepts.
	MinRSABits = 2048
	// MaxRSABits is the largest RSA modulus ParseSet accepts; it bounds the
	// work an untrusted document can cause.
	MaxRSABits = 8192
)

// MaxSetBytes is the largest JWK Set document ParseSet accepts (256 KiB);
// larger input is refused before parsing.
const MaxSetBytes = 256 << 10

// ErrInvalidSet is wrapped by every error ParseSet returns, and by errors the
// set renderers return for keys that would not form a valid set.
var ErrInvalidSet = errors.New("jwks: invalid JWK set")

// IsRSA reports whether alg is one of the supported RSA algorithms.
func IsRSA(alg string) bool { return alg == AlgRS256 || alg == AlgPS256 }

// IsSupported reports whether alg is one of the supported algorithms.
func IsSupported(alg string) bool {
	switch alg {
	case AlgES256, AlgES384, AlgEdDSA, AlgRS256, AlgPS256:
		return true
	}
	return false
}

// Profile names a key profile: the algorithm, plus the modulus size for RSA
// ("ES256", "ES384", "EdDSA", "RS256/2048", "PS256/4096"). rsaBits 0 means
// 2048; rsaBits is ignored for non-RSA algorithms. Profile does not validate
// its arguments.
func Profile(alg string, rsaBits int) string {
	if !IsRSA(alg) {
		return alg
	}
	if rsaBits == 0 {
		rsaBits = DefaultRSABits
	}
	return alg + "/" + strconv.Itoa(rsaBits)
}

// Generate creates a new private key for alg using crypto/rand. For RS256 and
// PS256, rsaBits selects the modulus size (2048, 3072 or 4096; 0 means 2048;
// anything else is an error); for other algorithms it is ignored, as in
// Profile. The key has "kid" set to the RFC 7638 thumbprint of its public key,
// "alg" to alg and "use" to "sig".
func Generate(alg string, rsaBits int) (jwk.Key, error) {
	var raw any
	var err error
	switch alg {
	case AlgES256, AlgES384, AlgEdDSA:
		rsaBits = 0 // ignored, as in Profile
	case AlgRS256, AlgPS256:
		if rsaBits == 0 {
			rsaBits = DefaultRSABits
		}
		if rsaBits != 2048 && rsaBits != 3072 && rsaBits != 4096 {
			return nil, fmt.Errorf("jwks: unsupported RSA key size %d (want 2048, 3072 or 4096)", rsaBits)
		}
	default:
		return nil, fmt.Errorf("jwks: unsupported algorithm %s", quoteValue(alg))
	}

	switch alg {
	case AlgES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgES384:
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case AlgEdDSA:
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	default:
		raw, err = rsa.GenerateKey(rand.Reader, rsaBits)
	}
	if err != nil {
		return nil, fmt.Errorf("jwks: generating %s key: %w", Profile(alg, rsaBits), err)
	}

	key, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("jwks: importing generated %s key: %w", Profile(alg, rsaBits), err)
	}
	if err := setMetadata(key, "", alg, "sig", nil); err != nil {
		return nil, err
	}
	return key, nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint (base64url without
// padding) of k's public key. Symmetric keys are refused.
func Thumbprint(k jwk.Key) (string, error) {
	if k == nil {
		return "", errors.New("jwks: nil key")
	}
	if k.KeyType() == jwa.OctetSeq() {
		return "", errors.New("jwks: symmetric (oct) keys have no public key")
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return "", fmt.Errorf("jwks: deriving public key: %w", err)
	}
	sum, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwks: computing thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// setMetadata sets kid (the thumbprint when kid is ""), alg, use (when not
// "") and key_ops (when not nil) on key.
func setMetadata(key jwk.Key, kid, alg, use string, ops []string) error {
	if kid == "" {
		tp, err := Thumbprint(key)
		if err != nil {
			return err
		}
		kid = tp
	}
	salg, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return fmt.Errorf("jwks: unsupported algorithm %s", quoteValue(alg))
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return fmt.Errorf("jwks: setting kid: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, salg); err != nil {
		return fmt.Errorf("jwks: setting alg: %w", err)
	}
	if use != "" {
		if err := key.Set(jwk.KeyUsageKey, use); err != nil {
			return fmt.Errorf("jwks: setting use: %w", err)
		}
	}
	if ops != nil {
		if err := key.Set(jwk.KeyOpsKey, ops); err != nil {
			return fmt.Errorf("jwks: setting key_ops: %w", err)
		}
	}
	return nil
}

// quoteValue quotes a short non-secret header value (alg, kty, crv, use,
// key_ops entry) for an error message, truncating long input.
func quoteValue(s string) string {
	const maxLen = 32
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}
