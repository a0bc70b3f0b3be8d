package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
)

// pssOptions: the salt is exactly as long as the hash (RFC 7518 §3.5), never "auto".
var pssOptions = &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}

// verifySignature reports whether sig is k's signature of signingInput under k's
// algorithm, with the JWS encoding of signatures (RFC 7518 §3): ECDSA as the fixed-length
// concatenation r || s, RSA as a big-endian integer of the modulus length.
func (k *key) verifySignature(signingInput, sig []byte) bool {
	switch k.kind {
	case algES256:
		if len(sig) != 2*k.size {
			return false
		}
		digest := sha256.Sum256(signingInput)
		return k.verifyECDSA(digest[:], sig)
	case algES384:
		if len(sig) != 2*k.size {
			return false
		}
		digest := sha512.Sum384(signingInput)
		return k.verifyECDSA(digest[:], sig)
	case algEdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, signingInput, sig)
	case algRS256:
		if len(sig) != k.size {
			return false
		}
		digest := sha256.Sum256(signingInput)
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest[:], sig) == nil
	case algPS256:
		if len(sig) != k.size {
			return false
		}
		digest := sha256.Sum256(signingInput)
		return rsa.VerifyPSS(k.rsa, crypto.SHA256, digest[:], sig, pssOptions) == nil
	}
	return false
}

// verifyECDSA checks a raw r || s signature. r and s must both lie in [1, N-1]: zero
// values are the "psychic signature" forgery (CVE-2022-21449) and values of N or more are
// non-canonical. crypto/ecdsa checks the range again; the signature is handed to it in
// the ASN.1 form it parses natively, built here without big.Int allocations.
func (k *key) verifyECDSA(digest, sig []byte) bool {
	r, s := sig[:k.size], sig[k.size:]
	if !inRange(r, k.n) || !inRange(s, k.n) {
		return false
	}
	var buf [2 + 2*(2+1+48)]byte // SEQUENCE of two INTEGERs of at most 49 bytes each
	der := buf[:2]
	der = appendASN1Int(der, r)
	der = appendASN1Int(der, s)
	der[0], der[1] = 0x30, byte(len(der)-2) // at most 102 bytes: short-form length
	return ecdsa.VerifyASN1(k.ec, digest, der)
}

// inRange reports whether the big-endian integer v (len(v) == len(n)) is in [1, n-1].
func inRange(v, n []byte) bool {
	nonZero := false
	for _, b := range v {
		if b != 0 {
			nonZero = true
			break
		}
	}
	if !nonZero {
		return false
	}
	for i := range v {
		if v[i] != n[i] {
			return v[i] < n[i]
		}
	}
	return false // v == n
}

// appendASN1Int appends the DER INTEGER encoding of the positive big-endian integer v.
func appendASN1Int(der, v []byte) []byte {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	n := len(v)
	pad := v[0]&0x80 != 0
	if pad {
		n++
	}
	der = append(der, 0x02, byte(n))
	if pad {
		der = append(der, 0)
	}
	return append(der, v...)
}
