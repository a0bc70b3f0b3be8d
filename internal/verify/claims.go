package verify

import (
	"bytes"
	"math"
	"strconv"
)

// maxNumericDate is 9999-12-31T23:59:59Z. Later dates are refused: they are no real
// expiry, and bounding them keeps exp + leeway from overflowing.
const maxNumericDate = 253402300799

// parseClaims checks the payload's JSON and the types of the claims Keyward reads. Time,
// issuer, audience and revocation rules are applied by the Verifier.
func parseClaims(payload []byte) (*Claims, *Error) {
	switch checkJSON(payload) {
	case jsonSyntax:
		return nil, reject("malformed", "payload is not valid JSON")
	case jsonDuplicate:
		return nil, reject("duplicate_member", "payload has duplicate member names")
	}
	if firstNonSpace(payload) != '{' {
		return nil, reject("claims", "payload is not a JSON object")
	}
	ps := string(payload) // one copy; the string claims are slices of it
	c := &Claims{payload: payload}
	hasExp := false
	it := newMemberIter(payload)
	for {
		rawName, escaped, start, end, ok := it.next()
		if !ok {
			break
		}
		name := rawName
		if escaped {
			name = []byte(decodeString(rawName, true))
		}
		var bad bool
		switch string(name) {
		case "iss":
			c.Issuer, bad = strValue(ps, payload, start, end)
		case "sub":
			c.Subject, bad = strValue(ps, payload, start, end)
		case "jti":
			c.JTI, bad = strValue(ps, payload, start, end)
		case "sid":
			c.SessionID, bad = strValue(ps, payload, start, end)
		case "client_id":
			c.ClientID, bad = strValue(ps, payload, start, end)
		case "aud":
			c.Audience, bad = audValue(ps, payload, start, end)
		case "exp":
			c.Expiry, bad = numericDate(payload[start:end], false)
			hasExp = true
		case "nbf":
			c.NotBefore, bad = numericDate(payload[start:end], true)
		case "iat":
			c.IssuedAt, bad = numericDate(payload[start:end], true)
		case "scope":
			var s string
			if s, bad = strValue(ps, payload, start, end); !bad {
				c.Scopes, bad = splitScope(s)
			}
		case "cnf":
			c.Cnf, bad = cnfValue(ps, payload, start, end)
		}
		if bad {
			return nil, reject("claims", "claim "+claimLabel(name)+" has the wrong type or form")
		}
	}
	if !hasExp {
		return nil, reject("missing_exp", "token has no exp")
	}
	return c, nil
}

// claimLabel names a registered claim for an error detail (never an arbitrary name).
func claimLabel(name []byte) string {
	switch string(name) {
	case "iss", "sub", "jti", "sid", "client_id", "aud", "exp", "nbf", "iat", "scope", "cnf":
		return string(name)
	}
	return "?"
}

// strValue returns the JSON string at payload[start:end]; bad is true for other types.
func strValue(ps string, payload []byte, start, end int) (s string, bad bool) {
	if payload[start] != '"' {
		return "", true
	}
	raw := payload[start+1 : end-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return ps[start+1 : end-1], false
	}
	return decodeString(raw, true), false
}

// audValue reads aud: a string or an array of strings (RFC 7519 §4.1.3).
func audValue(ps string, payload []byte, start, end int) ([]string, bool) {
	switch payload[start] {
	case '"':
		s, _ := strValue(ps, payload, start, end)
		return []string{s}, false
	case '[':
		var out []string
		it := newElemIter(payload[:end], start)
		for {
			es, ee, ok := it.next()
			if !ok {
				return out, false
			}
			s, bad := strValue(ps, payload, es, ee)
			if bad {
				return nil, true
			}
			out = append(out, s)
		}
	}
	return nil, true
}

// cnfValue reads cnf (RFC 7800): an object whose jkt (RFC 9449) and x5t#S256 (RFC 8705)
// members, when present, are strings. Other confirmation methods are ignored.
func cnfValue(ps string, payload []byte, start, end int) (*Confirmation, bool) {
	if payload[start] != '{' {
		return nil, true
	}
	cnf := &Confirmation{}
	it := memberIter{d: payload[:end], i: start + 1}
	for {
		rawName, escaped, vs, ve, ok := it.next()
		if !ok {
			return cnf, false
		}
		name := rawName
		if escaped {
			name = []byte(decodeString(rawName, true))
		}
		var bad bool
		switch string(name) {
		case "jkt":
			cnf.JKT, bad = strValue(ps, payload, vs, ve)
		case "x5t#S256":
			cnf.X5TS256, bad = strValue(ps, payload, vs, ve)
		}
		if bad {
			return nil, true
		}
	}
}

// numericDate reads a NumericDate (RFC 7519 §2): a non-negative JSON number, possibly
// fractional, at most maxNumericDate. Fractions are rounded toward the stricter side:
// down for exp, up (roundUp) for nbf and iat.
func numericDate(v []byte, roundUp bool) (int64, bool) {
	if len(v) == 0 || v[0] < '0' || v[0] > '9' { // strings, literals, objects, negatives
		return 0, true
	}
	if len(v) <= 12 {
		var n int64
		integer := true
		for _, b := range v {
			if b < '0' || b > '9' {
				integer = false
				break
			}
			n = n*10 + int64(b-'0')
		}
		if integer {
			return n, n > maxNumericDate
		}
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > maxNumericDate {
		return 0, true
	}
	if roundUp {
		f = math.Ceil(f)
	} else {
		f = math.Floor(f)
	}
	return int64(f), false
}

// splitScope splits a scope claim (RFC 6749 §3.3: scope-tokens of %x21 / %x23-5B /
// %x5D-7E separated by spaces). Any other character makes the claim invalid.
func splitScope(s string) ([]string, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == ' ':
		case b < 0x21 || b > 0x7e || b == '"' || b == '\\':
			return nil, true
		default:
			if i == 0 || s[i-1] == ' ' {
				n++
			}
		}
	}
	if n == 0 {
		return nil, false
	}
	out := make([]string, 0, n)
	for start := 0; start < len(s); {
		for start < len(s) && s[start] == ' ' {
			start++
		}
		end := start
		for end < len(s) && s[end] != ' ' {
			end++
		}
		if end > start {
			out = append(out, s[start:end])
		}
		start = end
	}
	return out, false
}
