package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

type algKind uint8

const (
	algES256 algKind = iota + 1
	algES384
	algEdDSA
	algRS256
	algPS256
)

func kindOf(alg string) algKind {
	switch alg {
	case jwks.AlgES256:
		return algES256
	case jwks.AlgES384:
		return algES384
	case jwks.AlgEdDSA:
		return algEdDSA
	case jwks.AlgRS256:
		return algRS256
	case jwks.AlgPS256:
		return algPS256
	}
	return 0
}

// key is a Key with what verification needs precomputed.
type key struct {
	Key
	kind algKind
	ec   *ecdsa.PublicKey
	n    []byte // ECDSA: the group order, big-endian, exactly size bytes
	size int    // ECDSA: scalar size in bytes (32, 48); RSA: modulus size in bytes
	ed   ed25519.PublicKey
	rsa  *rsa.PublicKey
}

// newKey checks that pub is a sound public key for alg and precomputes its data.
func newKey(kid, alg string, pub crypto.PublicKey) (*key, error) {
	k := &key{Key: Key{KID: kid, Alg: alg, Public: pub}, kind: kindOf(alg)}
	switch k.kind {
	case algES256, algES384:
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s key is %T, not an ECDSA public key", alg, pub)
		}
		curve := elliptic.P256()
		if k.kind == algES384 {
			curve = elliptic.P384()
		}
		if ec.Curve != curve {
			return nil, fmt.Errorf("%s key is not on curve %s", alg, curve.Params().Name)
		}
		if _, err := ec.ECDH(); err != nil { // rejects points not on the curve
			return nil, fmt.Errorf("%s key: invalid public point", alg)
		}
		k.ec = ec
		k.size = (curve.Params().BitSize + 7) / 8
		k.n = curve.Params().N.FillBytes(make([]byte, k.size))
	case algEdDSA:
		ed, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s key is %T, not an Ed25519 public key", alg, pub)
		}
		if len(ed) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s key has %d bytes, not %d", alg, len(ed), ed25519.PublicKeySize)
		}
		k.ed = ed
	case algRS256, algPS256:
		r, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s key is %T, not an RSA public key", alg, pub)
		}
		if r.N == nil || r.N.Sign() <= 0 {
			return nil, fmt.Errorf("%s key has no modulus", alg)
		}
		if bits := r.N.BitLen(); bits < jwks.MinRSABits || bits > jwks.MaxRSABits {
			return nil, fmt.Errorf("%s key has %d bits, outside %d..%d", alg, bits, jwks.MinRSABits, jwks.MaxRSABits)
		}
		if r.E < 3 || r.E%2 == 0 || r.E > 1<<31-1 {
			return nil, fmt.Errorf("%s key has an unsound public exponent", alg)
		}
		if r.N.Bit(0) == 0 {
			return nil, fmt.Errorf("%s key has an even modulus", alg)
		}
		if jwks.IsROCAVulnerable(r.N) { // checked here too: a KeySet may get keys that did not come through jwks.ParseSet
			return nil, fmt.Errorf("%s key has a ROCA-vulnerable modulus (CVE-2017-15361)", alg)
		}
		k.rsa = r
		k.size = (r.N.BitLen() + 7) / 8
	default:
		return nil, fmt.Errorf("algorithm %s is not supported", quoteShort(alg))
	}
	return k, nil
}

func newKeySet(keys []jwk.Key) (*KeySet, error) {
	s := &KeySet{keys: make(map[string]*key, len(keys))}
	for i, jk := range keys {
		if jk == nil {
			return nil, fmt.Errorf("verify: key %d is nil", i)
		}
		if jk.KeyType() == jwa.OctetSeq() {
			return nil, fmt.Errorf("verify: key %d is symmetric; only public keys can verify", i)
		}
		kid, ok := jk.KeyID()
		if !ok || kid == "" {
			return nil, fmt.Errorf("verify: key %d has no kid", i)
		}
		if _, dup := s.keys[kid]; dup {
			return nil, fmt.Errorf("verify: key %d: duplicate kid", i)
		}
		ka, ok := jk.Algorithm()
		if !ok {
			return nil, fmt.Errorf("verify: key %d has no alg", i)
		}
		alg := ka.String()
		if !jwks.IsSupported(alg) {
			return nil, fmt.Errorf("verify: key %d: algorithm %s is not supported", i, quoteShort(alg))
		}
		// "use" and "key_ops" restrict what a key may be used for (RFC 7517 §4.2, §4.3):
		// a key meant for something else is honoured by leaving it out.
		if use, ok := jk.KeyUsage(); ok && use != "sig" {
			continue
		}
		if ops, ok := jk.KeyOps(); ok && !hasVerify(ops) {
			continue
		}
		pubKey, err := jwk.PublicKeyOf(jk)
		if err != nil {
			return nil, fmt.Errorf("verify: key %d: %w", i, err)
		}
		var raw any
		if err := jwk.Export(pubKey, &raw); err != nil {
			return nil, fmt.Errorf("verify: key %d: %w", i, err)
		}
		if ec, ok := raw.(ecdsa.PublicKey); ok {
			raw = &ec
		}
		if r, ok := raw.(rsa.PublicKey); ok {
			raw = &r
		}
		k, err := newKey(kid, alg, raw)
		if err != nil {
			return nil, fmt.Errorf("verify: key %d: %w", i, err)
		}
		s.keys[kid] = k
	}
	return s, nil
}

func hasVerify(ops jwk.KeyOperationList) bool {
	for _, op := range ops {
		if op == jwk.KeyOpVerify {
			return true
		}
	}
	return false
}

// lookup returns the key with kid, or nil.
func (s *KeySet) lookup(kid []byte) *key {
	if s == nil {
		return nil
	}
	return s.keys[string(kid)]
}

// quoteShort quotes a short, non-secret value (an algorithm name) for an error message.
func quoteShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return fmt.Sprintf("%q", s)
}
