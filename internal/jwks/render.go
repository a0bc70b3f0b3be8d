package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// PrivateSetJSON renders keys, which must be private, as a JWK Set
// {"keys":[...]} in the given order. The output is compact JSON with members
// sorted by name, so the same keys always render to the same bytes. Only kty,
// the key parameters, kid, alg, and use and key_ops when set are written.
//
// The rendered set is checked with ParseSet(out, true) before it is returned,
// so PrivateSetJSON never produces a set that ParseSet would refuse (for
// example a key whose kid is not its thumbprint, or duplicate kids).
func PrivateSetJSON(keys []jwk.Key) ([]byte, error) {
	return renderSet(keys, true)
}

// PublicSetJSON renders the public halves of keys (private or public) as a JWK
// Set in the given order, with kid, alg and use kept. It never writes a
// private member ("d", "p", "q", "dp", "dq", "qi"). When a key has key_ops, the
// public key gets key_ops ["verify"]. The output is deterministic and is
// checked with ParseSet(out, false) before it is returned.
func PublicSetJSON(keys []jwk.Key) ([]byte, error) {
	return renderSet(keys, false)
}

func renderSet(keys []jwk.Key, private bool) ([]byte, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf(`%w: no keys to render ("keys" would be empty)`, ErrInvalidSet)
	}
	members := make([]map[string]any, 0, len(keys))
	for i, k := range keys {
		m, err := renderKey(k, private)
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %w", ErrInvalidSet, i, err)
		}
		members = append(members, m)
	}
	// encoding/json writes map keys in sorted order: deterministic output.
	out, err := json.Marshal(map[string]any{"keys": members})
	if err != nil {
		return nil, fmt.Errorf("jwks: encoding JWK set: %w", err)
	}
	if _, err := ParseSet(out, private); err != nil {
		return nil, fmt.Errorf("jwks: rendered set does not validate: %w", err)
	}
	return out, nil
}

func renderKey(k jwk.Key, private bool) (map[string]any, error) {
	if k == nil {
		return nil, fmt.Errorf("nil key")
	}
	m := map[string]any{}

	kid, ok := k.KeyID()
	if !ok || kid == "" {
		return nil, fmt.Errorf(`missing "kid"`)
	}
	m["kid"] = kid

	alg, ok := k.Algorithm()
	if !ok {
		return nil, fmt.Errorf(`missing "alg"`)
	}
	if !IsSupported(alg.String()) {
		return nil, fmt.Errorf("unsupported alg %s", quoteValue(alg.String()))
	}
	m["alg"] = alg.String()

	if use, ok := k.KeyUsage(); ok {
		m["use"] = use
	}
	if ops, ok := k.KeyOps(); ok {
		if private {
			list := make([]string, len(ops))
			for i, op := range ops {
				list[i] = string(op)
			}
			m["key_ops"] = list
		} else {
			m["key_ops"] = []string{"verify"}
		}
	}

	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil, fmt.Errorf("cannot export the key (kty %s)", quoteValue(k.KeyType().String()))
	}
	b64 := base64.RawURLEncoding.EncodeToString

	switch key := raw.(type) {
	case *ecdsa.PrivateKey:
		if err := renderECPublic(m, &key.PublicKey); err != nil {
			return nil, err
		}
		if private {
			d, err := key.Bytes()
			if err != nil {
				return nil, fmt.Errorf("invalid EC private key")
			}
			m["d"] = b64(d)
		}
	case *ecdsa.PublicKey:
		if private {
			return nil, fmt.Errorf("not a private key")
		}
		if err := renderECPublic(m, key); err != nil {
			return nil, err
		}
	case ed25519.PrivateKey:
		if len(key) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("invalid Ed25519 private key")
		}
		m["kty"], m["crv"] = "OKP", "Ed25519"
		m["x"] = b64(key.Public().(ed25519.PublicKey))
		if private {
			m["d"] = b64(key.Seed())
		}
	case ed25519.PublicKey:
		if private {
			return nil, fmt.Errorf("not a private key")
		}
		m["kty"], m["crv"] = "OKP", "Ed25519"
		m["x"] = b64(key)
	case *rsa.PrivateKey:
		renderRSAPublic(m, &key.PublicKey)
		if private {
			if len(key.Primes) != 2 {
				return nil, fmt.Errorf("multi-prime RSA keys are not supported")
			}
			if key.Precomputed.Dp == nil || key.Precomputed.Dq == nil || key.Precomputed.Qinv == nil {
				// Work on a copy: do not mutate the caller's key.
				cp := *key
				cp.Precomputed = rsa.PrecomputedValues{}
				cp.Precompute()
				if cp.Precomputed.Dp == nil {
					return nil, fmt.Errorf("the RSA private key is inconsistent")
				}
				key = &cp
			}
			m["d"] = b64int(key.D)
			m["p"] = b64int(key.Primes[0])
			m["q"] = b64int(key.Primes[1])
			m["dp"] = b64int(key.Precomputed.Dp)
			m["dq"] = b64int(key.Precomputed.Dq)
			m["qi"] = b64int(key.Precomputed.Qinv)
		}
	case *rsa.PublicKey:
		if private {
			return nil, fmt.Errorf("not a private key")
		}
		renderRSAPublic(m, key)
	default:
		return nil, fmt.Errorf("unsupported key type %s", quoteValue(k.KeyType().String()))
	}
	return m, nil
}

func renderECPublic(m map[string]any, pub *ecdsa.PublicKey) error {
	var crv string
	switch pub.Curve.Params().Name {
	case "P-256":
		crv = "P-256"
	case "P-384":
		crv = "P-384"
	default:
		return fmt.Errorf("unsupported EC curve %s", quoteValue(pub.Curve.Params().Name))
	}
	point, err := pub.Bytes() // 0x04 || x || y, fixed-size coordinates
	if err != nil {
		return fmt.Errorf("invalid EC public key")
	}
	size := (len(point) - 1) / 2
	m["kty"], m["crv"] = "EC", crv
	m["x"] = base64.RawURLEncoding.EncodeToString(point[1 : 1+size])
	m["y"] = base64.RawURLEncoding.EncodeToString(point[1+size:])
	return nil
}

func renderRSAPublic(m map[string]any, pub *rsa.PublicKey) {
	m["kty"] = "RSA"
	m["n"] = b64int(pub.N)
	m["e"] = b64int(big.NewInt(int64(pub.E)))
}

// b64int encodes a non-negative integer as minimal big-endian base64url
// (RFC 7518 Base64urlUInt).
func b64int(v *big.Int) string {
	if v == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(v.Bytes())
}
