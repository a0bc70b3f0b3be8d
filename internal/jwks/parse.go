package jwks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// ParseSet parses a JWK Set strictly and returns its keys in document order.
// It fails closed, with an error that names the offending key by index and
// never echoes key material, on:
//   - input larger than MaxSetBytes, invalid JSON or UTF-8, trailing data, or
//     duplicate member names anywhere in the document (see
//     CheckNoDuplicateMembers);
//   - a missing, non-array or empty "keys" member, or a key that is not an
//     object;
//   - symmetric ("oct") keys and key types other than EC, OKP and RSA;
//   - a missing or empty "kid", or a kid that is not the RFC 7638 SHA-256
//     thumbprint of the key, and duplicate kids;
//   - a missing "alg", an alg other than ES256, ES384, EdDSA, RS256 or PS256,
//     or one inconsistent with the key (ES256: EC P-256, ES384: EC P-384,
//     EdDSA: OKP Ed25519, RS256/PS256: RSA of MinRSABits to MaxRSABits bits);
//   - "use" other than "sig" ("use" may be absent);
//   - "key_ops" that is not a list of distinct "sign"/"verify" entries, or
//     that lacks "verify" (private false) or "sign" (private true);
//   - key parameters that are not canonical unpadded base64url of the exact
//     (EC, OKP) or minimal (RSA) length RFC 7518 prescribes, EC points not on
//     the curve, RSA public exponents that are even or outside [3, 2^31-1],
//     ROCA-vulnerable RSA moduli, and parameters of another key type;
//   - when private is true: a key without its complete private half, or whose
//     private half does not match its public half (multi-prime RSA, "oth", is
//     not supported);
//   - when private is false: a key carrying any private member ("d", "p",
//     "q", "dp", "dq", "qi", "oth", "k").
//
// Members that JWK does not define for these keys (for example "x5c") are
// ignored and are not carried into the returned keys, which hold exactly kty,
// the key parameters, kid, alg, and use and key_ops when present.
func ParseSet(data []byte, private bool) ([]jwk.Key, error) {
	if len(data) > MaxSetBytes {
		return nil, fmt.Errorf("%w: document is %d bytes, larger than the %d-byte limit", ErrInvalidSet, len(data), MaxSetBytes)
	}
	if err := CheckNoDuplicateMembers(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSet, err)
	}

	var top map[string]json.RawMessage
	if jsonKind(data) != '{' {
		return nil, fmt.Errorf("%w: the document must be a JSON object", ErrInvalidSet)
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: the document must be a JSON object", ErrInvalidSet)
	}
	rawKeys, ok := top["keys"]
	if !ok {
		return nil, fmt.Errorf(`%w: missing "keys" member`, ErrInvalidSet)
	}
	if jsonKind(rawKeys) != '[' {
		return nil, fmt.Errorf(`%w: "keys" must be an array`, ErrInvalidSet)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(rawKeys, &elems); err != nil {
		return nil, fmt.Errorf(`%w: "keys" must be an array`, ErrInvalidSet)
	}
	if len(elems) == 0 {
		return nil, fmt.Errorf(`%w: "keys" is empty`, ErrInvalidSet)
	}

	keys := make([]jwk.Key, 0, len(elems))
	seen := make(map[string]int, len(elems))
	for i, elem := range elems {
		key, kid, err := parseKey(elem, private)
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %w", ErrInvalidSet, i, err)
		}
		if j, dup := seen[kid]; dup {
			return nil, fmt.Errorf("%w: keys[%d]: duplicate kid (same as keys[%d])", ErrInvalidSet, i, j)
		}
		seen[kid] = i
		keys = append(keys, key)
	}
	return keys, nil
}

// Members that carry key parameters, by key type. Everything not listed in
// keyParams is metadata that ParseSet either checks (kty, kid, alg, use,
// key_ops) or ignores.
var (
	keyParams     = []string{"crv", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "k"}
	privateParams = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
	paramsFor     = map[string][]string{
		"EC":  {"crv", "x", "y", "d"},
		"OKP": {"crv", "x", "d"},
		"RSA": {"n", "e", "d", "p", "q", "dp", "dq", "qi"},
	}
	ktyFor = map[string]string{
		AlgES256: "EC", AlgES384: "EC", AlgEdDSA: "OKP", AlgRS256: "RSA", AlgPS256: "RSA",
	}
	crvFor = map[string]string{AlgES256: "P-256", AlgES384: "P-384", AlgEdDSA: "Ed25519"}
)

type keyObject map[string]json.RawMessage

func (m keyObject) has(name string) bool { _, ok := m[name]; return ok }

// str returns the string member name; ok is false when it is absent.
func (m keyObject) str(name string) (s string, ok bool, err error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	if jsonKind(raw) != '"' {
		return "", true, fmt.Errorf("%q must be a string", name)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%q must be a string", name)
	}
	return s, true, nil
}

// required returns the non-empty string member name.
func (m keyObject) required(name string) (string, error) {
	s, ok, err := m.str(name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("missing %q", name)
	case s == "":
		return "", fmt.Errorf("empty %q", name)
	}
	return s, nil
}

// bytesParam decodes a key parameter that must be canonical unpadded
// base64url. size > 0 demands exactly size bytes (EC and OKP parameters);
// size == 0 demands a minimal big-endian integer (RSA parameters, RFC 7518
// section 6.3: no leading zero octets).
func (m keyObject) bytesParam(name string, size int) ([]byte, error) {
	s, err := m.required(name)
	if err != nil {
		return nil, err
	}
	// Go's base64 decoder skips CR and LF even in strict mode.
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%q is not canonical unpadded base64url", name)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("%q is not canonical unpadded base64url", name)
	}
	if size > 0 && len(b) != size {
		return nil, fmt.Errorf("%q must be %d bytes, got %d", name, size, len(b))
	}
	if size == 0 && b[0] == 0 {
		return nil, fmt.Errorf("%q has leading zero octets (RFC 7518 requires the minimal encoding)", name)
	}
	return b, nil
}

func (m keyObject) intParam(name string) (*big.Int, error) {
	b, err := m.bytesParam(name, 0)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

// parseKey validates one JWK and returns it with its kid.
func parseKey(elem json.RawMessage, private bool) (jwk.Key, string, error) {
	if jsonKind(elem) != '{' {
		return nil, "", fmt.Errorf("a key must be a JSON object")
	}
	var m keyObject
	if err := json.Unmarshal(elem, &m); err != nil {
		return nil, "", fmt.Errorf("a key must be a JSON object")
	}

	kty, err := m.required("kty")
	if err != nil {
		return nil, "", err
	}
	switch kty {
	case "EC", "OKP", "RSA":
	case "oct":
		return nil, "", fmt.Errorf(`symmetric (kty "oct") keys are not allowed`)
	default:
		return nil, "", fmt.Errorf("unsupported kty %s", quoteValue(kty))
	}

	kid, err := m.required("kid")
	if err != nil {
		return nil, "", err
	}

	use, hasUse, err := m.str("use")
	if err != nil {
		return nil, "", err
	}
	if hasUse && use != "sig" {
		return nil, "", fmt.Errorf(`"use" is %s; only "sig" is allowed`, quoteValue(use))
	}

	ops, err := parseKeyOps(m, private)
	if err != nil {
		return nil, "", err
	}

	alg, err := m.required("alg")
	if err != nil {
		return nil, "", err
	}
	if !IsSupported(alg) {
		return nil, "", fmt.Errorf("unsupported alg %s (want one of ES256, ES384, EdDSA, RS256, PS256)", quoteValue(alg))
	}
	if want := ktyFor[alg]; kty != want {
		return nil, "", fmt.Errorf("alg %q does not match kty %s (want %q)", alg, quoteValue(kty), want)
	}

	// Private material, and parameters of other key types.
	for _, name := range privateParams {
		if m.has(name) && !private {
			return nil, "", fmt.Errorf("carries private key material (%q); a public JWK set must not contain private keys", name)
		}
	}
	if m.has("oth") {
		return nil, "", fmt.Errorf(`multi-prime RSA keys ("oth") are not supported`)
	}
	for _, name := range keyParams {
		if m.has(name) && !contains(paramsFor[kty], name) {
			return nil, "", fmt.Errorf("parameter %q is not valid for kty %q", name, kty)
		}
	}

	var raw any
	switch kty {
	case "EC":
		raw, err = parseEC(m, alg, private)
	case "OKP":
		raw, err = parseOKP(m, alg, private)
	case "RSA":
		raw, err = parseRSA(m, private)
	}
	if err != nil {
		return nil, "", err
	}

	key, err := jwk.Import(raw)
	if err != nil {
		return nil, "", fmt.Errorf("key rejected by jwk.Import: %w", err)
	}
	if err := setMetadata(key, kid, alg, use, ops); err != nil {
		return nil, "", err
	}
	tp, err := Thumbprint(key)
	if err != nil {
		return nil, "", err
	}
	if tp != kid {
		return nil, "", fmt.Errorf("kid is not the RFC 7638 SHA-256 thumbprint of the key")
	}
	return key, kid, nil
}

func parseKeyOps(m keyObject, private bool) ([]string, error) {
	raw, ok := m["key_ops"]
	if !ok {
		return nil, nil
	}
	var ops []string
	if jsonKind(raw) != '[' || json.Unmarshal(raw, &ops) != nil {
		return nil, fmt.Errorf(`"key_ops" must be an array of strings`)
	}
	// json.Unmarshal turns null elements into "" and is otherwise lenient.
	var elems []json.RawMessage
	_ = json.Unmarshal(raw, &elems)
	for _, e := range elems {
		if jsonKind(e) != '"' {
			return nil, fmt.Errorf(`"key_ops" must be an array of strings`)
		}
	}
	var hasSign, hasVerify bool
	for i, op := range ops {
		switch op {
		case "sign":
			hasSign = true
		case "verify":
			hasVerify = true
		default:
			return nil, fmt.Errorf(`"key_ops" contains %s; only "sign" and "verify" are allowed`, quoteValue(op))
		}
		if contains(ops[:i], op) {
			return nil, fmt.Errorf(`"key_ops" contains %q more than once`, op)
		}
	}
	if private && !hasSign {
		return nil, fmt.Errorf(`"key_ops" of a private key must include "sign"`)
	}
	if !private && !hasVerify {
		return nil, fmt.Errorf(`"key_ops" of a public key must include "verify"`)
	}
	if ops == nil {
		ops = []string{}
	}
	return ops, nil
}

func parseEC(m keyObject, alg string, private bool) (any, error) {
	crv, err := m.required("crv")
	if err != nil {
		return nil, err
	}
	if want := crvFor[alg]; crv != want {
		return nil, fmt.Errorf("alg %q does not match crv %s (want %q)", alg, quoteValue(crv), want)
	}
	curve, size := elliptic.P256(), 32
	if crv == "P-384" {
		curve, size = elliptic.P384(), 48
	}
	x, err := m.bytesParam("x", size)
	if err != nil {
		return nil, err
	}
	y, err := m.bytesParam("y", size)
	if err != nil {
		return nil, err
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("the EC public key is not a valid point on %s", crv)
	}
	if !private {
		return pub, nil
	}
	if !m.has("d") {
		return nil, fmt.Errorf(`missing private key material ("d")`)
	}
	d, err := m.bytesParam("d", size)
	if err != nil {
		return nil, err
	}
	priv, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return nil, fmt.Errorf(`the EC private scalar ("d") is out of range`)
	}
	if !priv.PublicKey.Equal(pub) {
		return nil, fmt.Errorf("the private key does not match the public key")
	}
	return priv, nil
}

func parseOKP(m keyObject, alg string, private bool) (any, error) {
	crv, err := m.required("crv")
	if err != nil {
		return nil, err
	}
	if want := crvFor[alg]; crv != want {
		return nil, fmt.Errorf("alg %q does not match crv %s (want %q)", alg, quoteValue(crv), want)
	}
	x, err := m.bytesParam("x", ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	pub := ed25519.PublicKey(x)
	if !private {
		return pub, nil
	}
	if !m.has("d") {
		return nil, fmt.Errorf(`missing private key material ("d")`)
	}
	d, err := m.bytesParam("d", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(d)
	if !pub.Equal(priv.Public()) {
		return nil, fmt.Errorf("the private key does not match the public key")
	}
	return priv, nil
}

func parseRSA(m keyObject, private bool) (any, error) {
	n, err := m.intParam("n")
	if err != nil {
		return nil, err
	}
	if bits := n.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("RSA modulus is %d bits; it must be %d to %d bits", bits, MinRSABits, MaxRSABits)
	}
	if n.Bit(0) == 0 {
		return nil, fmt.Errorf("RSA modulus is even")
	}
	e, err := m.intParam("e")
	if err != nil {
		return nil, err
	}
	if e.BitLen() > 31 || e.Int64() < 3 || e.Bit(0) == 0 {
		return nil, fmt.Errorf("RSA public exponent must be odd and in [3, 2^31-1]")
	}
	if IsROCAVulnerable(n) {
		return nil, fmt.Errorf("RSA modulus has the ROCA fingerprint (CVE-2017-15361); the key is factorable")
	}
	pub := rsa.PublicKey{N: n, E: int(e.Int64())}
	if !private {
		return &pub, nil
	}
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if !m.has(name) {
			return nil, fmt.Errorf("missing private key material (%q); RSA private keys need d, p, q, dp, dq and qi", name)
		}
	}
	var vals [6]*big.Int
	for i, name := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if vals[i], err = m.intParam(name); err != nil {
			return nil, err
		}
	}
	priv := &rsa.PrivateKey{
		PublicKey: pub,
		D:         vals[0],
		Primes:    []*big.Int{vals[1], vals[2]},
		Precomputed: rsa.PrecomputedValues{
			Dp: vals[3], Dq: vals[4], Qinv: vals[5],
		},
	}
	// With Dp, Dq and Qinv set, Validate checks them and n = p*q, e*d = 1
	// and the CRT values against each other (crypto/internal/fips140/rsa).
	if err := priv.Validate(); err != nil {
		return nil, fmt.Errorf("the RSA private key is inconsistent: %w", err)
	}
	return priv, nil
}

// jsonKind returns the first non-whitespace byte of a JSON value.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
