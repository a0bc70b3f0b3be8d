package verify

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync/atomic"
)

var b64 = base64.RawURLEncoding.Strict()

// tokenChar classifies token bytes: 1 for the base64url alphabet, 2 for '.', 3 for the
// characters of other base64 variants ('=', '+', '/'), 0 for anything else. Only used to
// explain a part that did not decode.
var tokenChar = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	t['-'], t['_'] = 1, 1
	t['.'] = 2
	t['='], t['+'], t['/'] = 3, 3, 3
	return t
}()

// typRule is the typ header requirement.
type typRule uint8

const (
	typAny     typRule = iota // VerifyJWS: typ is not checked
	typAT                     // "at+jwt" or "application/at+jwt", any case
	typJWT                    // absent, "JWT" or "application/jwt", any case
	typInvalid                // Options.Type is neither: nothing passes
)

func typRuleOf(t string) typRule {
	switch t {
	case "at+jwt":
		return typAT
	case "JWT":
		return typJWT
	}
	return typInvalid
}

func reject(reason, detail string) *Error { return &Error{Reason: reason, Detail: detail} }

// jws is a token whose JWS layer passed.
type jws struct {
	hdr     Header
	key     *key
	payload []byte
}

// verifyJWS checks everything about a compact JWS but its payload: structure, canonical
// base64url, the header's JSON and parameters, the key and the signature. sigChecks, when
// not nil, counts signature verifications.
func verifyJWS(token string, keys *KeySet, algorithms []string, maxBytes int, sigChecks *atomic.Uint64) (Header, []byte, error) {
	j, err := checkJWS(token, keys, algorithms, maxBytes, typAny, sigChecks)
	if err != nil {
		return Header{}, nil, err
	}
	return j.hdr, j.payload, nil
}

func checkJWS(token string, keys *KeySet, algorithms []string, maxBytes int, typ typRule, sigChecks *atomic.Uint64) (jws, *Error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTokenBytes
	}
	if len(token) > maxBytes {
		return jws{}, reject("too_large", "token exceeds the size limit")
	}
	if len(token) == 0 {
		return jws{}, reject("malformed", "empty token")
	}

	// Compact serialization: exactly three base64url parts. Anything else (JSON
	// serialization, JWE's five parts, whitespace) is not a token we read. The decoder
	// rejects every character outside the alphabet except CR and LF, which it skips.
	dot1 := strings.IndexByte(token, '.')
	dot2 := -1
	if dot1 >= 0 {
		if i := strings.IndexByte(token[dot1+1:], '.'); i >= 0 {
			dot2 = dot1 + 1 + i
		}
	}
	if dot2 < 0 || strings.IndexByte(token[dot2+1:], '.') >= 0 {
		return jws{}, reject("malformed", "not a compact JWS: want 3 parts")
	}
	if strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return jws{}, reject("malformed", "not a compact JWS: unexpected character")
	}

	tb := stringBytes(token) // read only
	hPart, pPart, sPart := tb[:dot1], tb[dot1+1:dot2], tb[dot2+1:]
	// The header goes to the heap (checkJSON's recursion makes escape analysis keep it
	// there anyway); the signature fits the stack for every key size up to 8192 bits.
	var sBuf [1024]byte
	header, ok := decodePart(nil, hPart)
	if !ok {
		return jws{}, partError("header", hPart)
	}
	payload, ok := decodePart(nil, pPart)
	if !ok {
		return jws{}, partError("payload", pPart)
	}
	sig, ok := decodePart(sBuf[:], sPart)
	if !ok {
		return jws{}, partError("signature", sPart)
	}

	switch checkJSON(header) {
	case jsonSyntax:
		return jws{}, reject("malformed", "header is not valid JSON")
	case jsonDuplicate:
		return jws{}, reject("duplicate_member", "header has duplicate member names")
	}
	if firstNonSpace(header) != '{' {
		return jws{}, reject("header", "header is not a JSON object")
	}
	h, herr := readHeader(header)
	if herr != nil {
		return jws{}, herr
	}

	k := keys.lookup(h.kid)
	if k == nil {
		return jws{}, reject("unknown_kid", "no key with the token's kid")
	}
	if string(h.alg) != k.Alg {
		return jws{}, reject("alg_mismatch", "header alg "+string(h.alg)+" is not the key's "+k.Alg)
	}
	if len(algorithms) > 0 && !contains(algorithms, k.Alg) {
		return jws{}, reject("alg_unsupported", k.Alg+" is not allowed by policy")
	}
	if !typOK(typ, h.typ, h.hasTyp) {
		return jws{}, reject("typ", "typ is not the required type")
	}

	if sigChecks != nil {
		sigChecks.Add(1)
	}
	if !k.verifySignature(tb[:dot2], sig) {
		return jws{}, reject("signature", "signature does not verify with key "+k.KID)
	}
	var typStr string
	if h.hasTyp {
		typStr = string(h.typ)
	}
	return jws{hdr: Header{Alg: k.Alg, KID: k.KID, Typ: typStr}, key: k, payload: payload}, nil
}

// partError explains why a part did not decode: characters that belong to no base64
// alphabet make the token malformed; padding, the standard alphabet, an impossible
// length or non-zero unused bits make it non-canonical base64url.
func partError(name string, part []byte) *Error {
	for _, c := range part {
		if tokenChar[c] == 0 {
			return reject("malformed", "not a compact JWS: unexpected character in the "+name)
		}
	}
	return reject("base64", name+" is not canonical unpadded base64url")
}

// decodePart decodes canonical unpadded base64url into buf when it fits, else into a new
// slice.
func decodePart(buf, part []byte) ([]byte, bool) {
	n := b64.DecodedLen(len(part))
	if n > len(buf) {
		buf = make([]byte, n)
	}
	m, err := b64.Decode(buf[:n], part)
	if err != nil {
		return nil, false
	}
	return buf[:m], true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func typOK(rule typRule, typ []byte, present bool) bool {
	switch rule {
	case typAny:
		return true
	case typAT:
		return present && (bytes.EqualFold(typ, []byte("at+jwt")) || bytes.EqualFold(typ, []byte("application/at+jwt")))
	case typJWT:
		return !present || bytes.EqualFold(typ, []byte("JWT")) || bytes.EqualFold(typ, []byte("application/jwt"))
	}
	return false
}

type header struct {
	alg, kid, typ []byte // views of the header bytes
	hasTyp        bool
}

// readHeader applies the header rules to a checked JSON object. Order matters only for
// which reason a token with several faults gets; alg comes first.
func readHeader(d []byte) (header, *Error) {
	var h header
	var hasAlg, hasKid, embedded, crit, cty bool
	typeErr := ""
	it := newMemberIter(d)
	for {
		rawName, escaped, start, end, ok := it.next()
		if !ok {
			break
		}
		name := rawName
		if escaped {
			name = []byte(decodeString(rawName, true))
		}
		v := d[start:end]
		switch string(name) {
		case "alg":
			s, ok := stringValue(v)
			if !ok {
				typeErr = "alg is not a string"
			}
			h.alg, hasAlg = s, true
		case "kid":
			s, ok := stringValue(v)
			if !ok {
				typeErr = "kid is not a string"
			}
			h.kid, hasKid = s, true
		case "typ":
			s, ok := stringValue(v)
			if !ok {
				typeErr = "typ is not a string"
			}
			h.typ, h.hasTyp = s, true
		case "cty":
			cty = true
		case "crit", "b64":
			crit = true
		case "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256":
			embedded = true
		}
	}
	switch {
	case typeErr != "":
		return h, reject("header", typeErr)
	case !hasAlg:
		return h, reject("header", "missing alg")
	}
	switch alg := h.alg; {
	case bytes.EqualFold(alg, []byte("none")):
		return h, reject("alg_none", "alg none")
	case len(alg) >= 2 && bytes.EqualFold(alg[:2], []byte("HS")):
		return h, reject("alg_hmac", "HMAC algorithms are not accepted")
	case kindOf(string(alg)) == 0:
		return h, reject("alg_unsupported", "alg is not one of ES256, ES384, EdDSA, RS256, PS256")
	}
	switch {
	case embedded:
		return h, reject("embedded_key", "header carries a key or key reference (jwk, jku, x5u, x5c, x5t)")
	case crit:
		return h, reject("crit", "header has crit or b64: no extension is understood")
	case cty:
		return h, reject("header", "header has cty: nested or non-JWT content is not accepted")
	case !hasKid:
		return h, reject("header", "missing kid")
	}
	return h, nil
}

// stringValue returns the decoded value of a checked JSON value if it is a string.
func stringValue(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	return []byte(decodeString(raw, true)), true
}
