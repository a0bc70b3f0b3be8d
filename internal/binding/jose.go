package binding

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// b64 decodes canonical unpadded base64url: only the 64 URL-safe characters
// (no padding, whitespace or line breaks), and unused trailing bits zero, so
// that every byte string has exactly one accepted encoding.
func b64(s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, false
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

// object decodes a JSON document that must be one object without duplicate
// (or case-insensitively equal) member names. Member lookup in the result is
// exact, so "TYP" never stands in for "typ".
func object(data []byte) (map[string]json.RawMessage, error) {
	if err := jwks.CheckNoDuplicateMembers(data); err != nil {
		return nil, err
	}
	if kind(data) != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

// kind returns the first non-whitespace byte of a JSON value.
func kind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// str returns member name of m as a string. ok is false when it is absent;
// err is set when it is present but not a JSON string (null included).
func str(m map[string]json.RawMessage, name string) (s string, ok bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if kind(raw) != '"' || json.Unmarshal(raw, &s) != nil {
		return "", true, fmt.Errorf("%q must be a string", name)
	}
	return s, true, nil
}

// quote renders a short, non-secret value (alg, typ, kty) for an error
// detail, truncated so that hostile input cannot flood logs.
func quote(s string) string {
	const maxLen = 32
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}

// proofKey is the validated JOSE header of a proof: its algorithm and the
// public key from its "jwk" member, ready for raw crypto verification.
type proofKey struct {
	alg string
	pub crypto.PublicKey // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
	jkt string           // RFC 7638 SHA-256 thumbprint of pub
}

// Members carrying key parameters, by key type (RFC 7518 section 6). A
// public DPoP key must carry none of privateParams.
var (
	keyParams     = []string{"crv", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "k"}
	privateParams = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
	paramsFor     = map[string][]string{
		"EC":  {"crv", "x", "y"},
		"OKP": {"crv", "x"},
		"RSA": {"n", "e"},
	}
	ktyFor = map[string]string{
		jwks.AlgES256: "EC", jwks.AlgES384: "EC", jwks.AlgEdDSA: "OKP",
		jwks.AlgRS256: "RSA", jwks.AlgPS256: "RSA",
	}
)

// isDPoPType reports whether a "typ" header value names the
// application/dpop+jwt media type. RFC 7515 section 4.1.9 lets the
// "application/" prefix be omitted and media types compare
// case-insensitively.
func isDPoPType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, "dpop+jwt")
}

// parseHeader validates a decoded JOSE header (RFC 9449 section 4.3 steps
// 4, 5 and 7) and returns the proof key. allowed reports whether an alg is
// accepted.
func parseHeader(data []byte, allowed func(string) bool) (*proofKey, *Error) {
	h, err := object(data)
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "JOSE header: " + err.Error()}
	}

	typ, ok, err := str(h, "typ")
	switch {
	case err != nil:
		return nil, &Error{Reason: ReasonTyp, Detail: err.Error()}
	case !ok:
		return nil, &Error{Reason: ReasonTyp, Detail: `missing "typ" (want "dpop+jwt")`}
	case !isDPoPType(typ):
		return nil, &Error{Reason: ReasonTyp, Detail: "typ is " + quote(typ) + `, want "dpop+jwt"`}
	}

	alg, ok, err := str(h, "alg")
	switch {
	case err != nil:
		return nil, &Error{Reason: ReasonAlg, Detail: err.Error()}
	case !ok:
		return nil, &Error{Reason: ReasonAlg, Detail: `missing "alg"`}
	case alg == "none" || strings.HasPrefix(alg, "HS"):
		return nil, &Error{Reason: ReasonAlg, Detail: "alg " + quote(alg) + " is not an asymmetric signature algorithm"}
	case !allowed(alg):
		return nil, &Error{Reason: ReasonAlg, Detail: "alg " + quote(alg) + " is not accepted"}
	}

	// We implement no JWS extensions (RFC 7515 section 4.1.11), and an
	// unencoded payload (RFC 7797 "b64") would change what is signed.
	for _, name := range []string{"crit", "b64"} {
		if _, ok := h[name]; ok {
			return nil, &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("JOSE header parameter %q is not supported", name)}
		}
	}

	raw, ok := h["jwk"]
	if !ok {
		return nil, &Error{Reason: ReasonJWK, Detail: `missing "jwk" header parameter`}
	}
	key, perr := parseJWK(raw, alg)
	if perr != nil {
		return nil, &Error{Reason: ReasonJWK, Detail: perr.Error()}
	}
	return key, nil
}

// parseJWK validates the "jwk" header parameter strictly: a public key of
// the type alg needs, with canonical parameters and no private members.
func parseJWK(raw json.RawMessage, alg string) (*proofKey, error) {
	if kind(raw) != '{' {
		return nil, fmt.Errorf(`"jwk" must be a JSON object`)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf(`"jwk" must be a JSON object`)
	}
	kty, ok, err := str(m, "kty")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf(`missing "kty"`)
	case kty == "oct":
		return nil, fmt.Errorf(`symmetric (kty "oct") keys are not allowed`)
	}
	for _, name := range privateParams {
		if _, ok := m[name]; ok {
			return nil, fmt.Errorf("carries private key material (%q); a DPoP proof must carry only the public key", name)
		}
	}
	want := ktyFor[alg]
	if kty != want {
		return nil, fmt.Errorf("kty %s does not match alg %q (want %q)", quote(kty), alg, want)
	}
	for _, name := range keyParams {
		if _, ok := m[name]; ok && !contains(paramsFor[kty], name) {
			return nil, fmt.Errorf("parameter %q is not valid for kty %q", name, kty)
		}
	}
	if a, ok, err := str(m, "alg"); err != nil {
		return nil, err
	} else if ok && a != alg {
		return nil, fmt.Errorf("jwk alg %s does not match the header alg %q", quote(a), alg)
	}
	if u, ok, err := str(m, "use"); err != nil {
		return nil, err
	} else if ok && u != "sig" {
		return nil, fmt.Errorf(`jwk "use" is %s; only "sig" is allowed`, quote(u))
	}

	var pub crypto.PublicKey
	switch alg {
	case jwks.AlgES256:
		pub, err = parseECKey(m, "P-256", elliptic.P256(), 32)
	case jwks.AlgES384:
		pub, err = parseECKey(m, "P-384", elliptic.P384(), 48)
	case jwks.AlgEdDSA:
		pub, err = parseOKPKey(m)
	default:
		pub, err = parseRSAKey(m)
	}
	if err != nil {
		return nil, err
	}
	k, err := jwk.Import(pub)
	if err != nil {
		return nil, fmt.Errorf("key rejected by jwk.Import: %w", err)
	}
	jkt, err := jwks.Thumbprint(k)
	if err != nil {
		return nil, err
	}
	return &proofKey{alg: alg, pub: pub, jkt: jkt}, nil
}

// param decodes a key parameter that must be canonical unpadded base64url.
// size > 0 demands exactly size bytes; size 0 demands a minimal big-endian
// integer (RFC 7518 section 6.3: no leading zero octets).
func param(m map[string]json.RawMessage, name string, size int) ([]byte, error) {
	s, ok, err := str(m, name)
	if err != nil {
		return nil, err
	}
	if !ok || s == "" {
		return nil, fmt.Errorf("missing %q", name)
	}
	b, ok := b64(s)
	if !ok {
		return nil, fmt.Errorf("%q is not canonical unpadded base64url", name)
	}
	if size > 0 && len(b) != size {
		return nil, fmt.Errorf("%q must be %d bytes, got %d", name, size, len(b))
	}
	if size == 0 && b[0] == 0 {
		return nil, fmt.Errorf("%q has leading zero octets", name)
	}
	return b, nil
}

func parseECKey(m map[string]json.RawMessage, crv string, curve elliptic.Curve, size int) (*ecdsa.PublicKey, error) {
	c, _, err := str(m, "crv")
	if err != nil {
		return nil, err
	}
	if c != crv {
		return nil, fmt.Errorf("crv %s does not match the alg (want %q)", quote(c), crv)
	}
	x, err := param(m, "x", size)
	if err != nil {
		return nil, err
	}
	y, err := param(m, "y", size)
	if err != nil {
		return nil, err
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("the EC public key is not a valid point on %s", crv)
	}
	return pub, nil
}

func parseOKPKey(m map[string]json.RawMessage) (ed25519.PublicKey, error) {
	c, _, err := str(m, "crv")
	if err != nil {
		return nil, err
	}
	if c != "Ed25519" {
		return nil, fmt.Errorf(`crv %s does not match alg "EdDSA" (want "Ed25519")`, quote(c))
	}
	x, err := param(m, "x", ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(x), nil
}

func parseRSAKey(m map[string]json.RawMessage) (*rsa.PublicKey, error) {
	nb, err := param(m, "n", 0)
	if err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < jwks.MinRSABits || bits > jwks.MaxRSABits {
		return nil, fmt.Errorf("RSA modulus is %d bits; it must be %d to %d bits", bits, jwks.MinRSABits, jwks.MaxRSABits)
	}
	if n.Bit(0) == 0 {
		return nil, fmt.Errorf("RSA modulus is even")
	}
	eb, err := param(m, "e", 0)
	if err != nil {
		return nil, err
	}
	e := new(big.Int).SetBytes(eb)
	if e.BitLen() > 31 || e.Int64() < 3 || e.Bit(0) == 0 {
		return nil, fmt.Errorf("RSA public exponent must be odd and in [3, 2^31-1]")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// verify checks sig over the JWS signing input with the proof key using the
// standard library directly (RFC 7518 section 3).
func (k *proofKey) verify(input, sig []byte) bool {
	switch k.alg {
	case jwks.AlgES256:
		h := sha256.Sum256(input)
		return verifyEC(k.pub.(*ecdsa.PublicKey), h[:], sig, 32)
	case jwks.AlgES384:
		h := sha512.Sum384(input)
		return verifyEC(k.pub.(*ecdsa.PublicKey), h[:], sig, 48)
	case jwks.AlgEdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.pub.(ed25519.PublicKey), input, sig)
	case jwks.AlgRS256:
		h := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), crypto.SHA256, h[:], sig) == nil
	case jwks.AlgPS256:
		// RFC 7518 section 3.5: the salt is as long as the hash.
		h := sha256.Sum256(input)
		opts := rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		return rsa.VerifyPSS(k.pub.(*rsa.PublicKey), crypto.SHA256, h[:], sig, &opts) == nil
	}
	return false
}

// verifyEC verifies a JWS ECDSA signature: the fixed-width concatenation
// R || S (RFC 7518 section 3.4), not ASN.1.
func verifyEC(pub *ecdsa.PublicKey, hash, sig []byte, size int) bool {
	if len(sig) != 2*size {
		return false
	}
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	return ecdsa.Verify(pub, hash, r, s)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
