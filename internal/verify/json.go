package verify

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/keyward-dev/keyward/internal/jwks"
)

// A strict JSON checker for JWS headers and JWT payloads.
//
// checkJSON accepts exactly the documents jwks.CheckNoDuplicateMembers accepts (one
// well-formed UTF-8 JSON value, no object with two member names that are equal or equal
// after the case folding encoding/json applies, nesting at most jwks.MaxJSONDepth), but in
// one allocation-free pass instead of a token stream with a map per object: that function
// costs about as much as 10% of an ECDSA verification, which the request path cannot
// afford. FuzzCheckJSON keeps the two in agreement.

// jsonResult is the outcome of checkJSON.
type jsonResult uint8

const (
	jsonOK        jsonResult = iota
	jsonSyntax               // not exactly one well-formed UTF-8 JSON value, or too deep
	jsonDuplicate            // an object has two members whose names fold to the same string
)

// linearNames is how many member names an object may have before duplicate detection
// switches from a linear scan to a map, which bounds the work on hostile input.
const linearNames = 16

// nameRef locates a member name (between its quotes) in the document. simple names are
// ASCII without escapes: they fold by ASCII case and are compared in place.
type nameRef struct {
	start, end int32
	simple     bool
}

// jsonChecker keeps the names of the open objects in a fixed array (and extra, past
// it) rather than in slices of stack arrays, so that it stays on the stack.
type jsonChecker struct {
	d     []byte
	i     int
	n     int // names in use
	names [64]nameRef
	extra []nameRef
	res   jsonResult
}

// checkJSON validates data as described above.
func checkJSON(data []byte) jsonResult {
	if !utf8.Valid(data) || len(data) > 1<<30 {
		return jsonSyntax
	}
	var c jsonChecker
	c.d = data
	c.ws()
	if !c.value(0) {
		return c.fail()
	}
	c.ws()
	if c.i != len(c.d) {
		return jsonSyntax
	}
	return jsonOK
}

func (c *jsonChecker) push(r nameRef) {
	if c.n < len(c.names) {
		c.names[c.n] = r
	} else {
		c.extra = append(c.extra, r)
	}
	c.n++
}

func (c *jsonChecker) at(i int) nameRef {
	if i < len(c.names) {
		return c.names[i]
	}
	return c.extra[i-len(c.names)]
}

func (c *jsonChecker) truncate(n int) {
	c.n = n
	if n <= len(c.names) {
		c.extra = c.extra[:0]
	} else {
		c.extra = c.extra[:n-len(c.names)]
	}
}

func (c *jsonChecker) fail() jsonResult {
	if c.res == jsonOK {
		return jsonSyntax
	}
	return c.res
}

func (c *jsonChecker) ws() {
	for c.i < len(c.d) {
		switch c.d[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// next consumes what follows a container member: ',' (more to come) or the closing
// byte (done). Anything else is invalid (ok false).
func (c *jsonChecker) next(closing byte) (done, ok bool) {
	c.ws()
	if c.i >= len(c.d) {
		return false, false
	}
	switch c.d[c.i] {
	case ',':
		c.i++
		return false, true
	case closing:
		c.i++
		return true, true
	}
	return false, false
}

// value consumes one value; depth is the number of enclosing containers.
func (c *jsonChecker) value(depth int) bool {
	if c.i >= len(c.d) {
		return false
	}
	switch b := c.d[c.i]; {
	case b == '{':
		if depth >= jwks.MaxJSONDepth {
			return false
		}
		return c.object(depth + 1)
	case b == '[':
		if depth >= jwks.MaxJSONDepth {
			return false
		}
		return c.array(depth + 1)
	case b == '"':
		_, _, ok := c.str()
		return ok
	case b == '-' || b >= '0' && b <= '9':
		return c.number()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	}
	return false
}

func (c *jsonChecker) literal(lit string) bool {
	if len(c.d)-c.i < len(lit) || string(c.d[c.i:c.i+len(lit)]) != lit {
		return false
	}
	c.i += len(lit)
	return true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func (c *jsonChecker) digits() bool {
	start := c.i
	for c.i < len(c.d) && isDigit(c.d[c.i]) {
		c.i++
	}
	return c.i > start
}

func (c *jsonChecker) number() bool {
	if c.d[c.i] == '-' {
		c.i++
	}
	if c.i >= len(c.d) {
		return false
	}
	if c.d[c.i] == '0' {
		c.i++
	} else if !c.digits() {
		return false
	}
	if c.i < len(c.d) && c.d[c.i] == '.' {
		c.i++
		if !c.digits() {
			return false
		}
	}
	if c.i < len(c.d) && (c.d[c.i] == 'e' || c.d[c.i] == 'E') {
		c.i++
		if c.i < len(c.d) && (c.d[c.i] == '+' || c.d[c.i] == '-') {
			c.i++
		}
		if !c.digits() {
			return false
		}
	}
	return true
}

func isHex(b byte) bool { return isDigit(b) || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' }

// str consumes a string and returns the bytes between its quotes, whether they hold an
// escape sequence, and whether the string is well formed.
func (c *jsonChecker) str() (raw []byte, escaped, ok bool) {
	start := c.i + 1
	for j := start; j < len(c.d); j++ {
		switch b := c.d[j]; {
		case b == '"':
			c.i = j + 1
			return c.d[start:j], escaped, true
		case b < 0x20:
			return nil, false, false
		case b == '\\':
			escaped = true
			j++
			if j >= len(c.d) {
				return nil, false, false
			}
			switch c.d[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(c.d)-j < 5 || !isHex(c.d[j+1]) || !isHex(c.d[j+2]) || !isHex(c.d[j+3]) || !isHex(c.d[j+4]) {
					return nil, false, false
				}
				j += 4
			default:
				return nil, false, false
			}
		}
	}
	return nil, false, false
}

func (c *jsonChecker) array(depth int) bool {
	c.i++ // '['
	c.ws()
	if c.i < len(c.d) && c.d[c.i] == ']' {
		c.i++
		return true
	}
	for {
		c.ws()
		if !c.value(depth) {
			return false
		}
		if done, ok := c.next(']'); !ok || done {
			return ok
		}
	}
}

func (c *jsonChecker) object(depth int) bool {
	c.i++ // '{'
	c.ws()
	if c.i < len(c.d) && c.d[c.i] == '}' {
		c.i++
		return true
	}
	base := c.n
	ok := c.members(depth, base)
	c.truncate(base)
	return ok
}

func (c *jsonChecker) members(depth, base int) bool {
	var seen map[string]struct{} // once the object has more than linearNames members
	for {
		c.ws()
		if c.i >= len(c.d) || c.d[c.i] != '"' {
			return false
		}
		start := c.i + 1
		raw, escaped, ok := c.str()
		if !ok {
			return false
		}
		ref := nameRef{start: int32(start), end: int32(start + len(raw)), simple: !escaped && isASCII(raw)}
		// Simple names are compared in place; an object with a name that needs decoding
		// or folding beyond ASCII, or with many names, switches to a map of folded names,
		// so that each name is folded once.
		if seen == nil && (!ref.simple || c.n-base >= linearNames) {
			seen = make(map[string]struct{}, max(2*(c.n-base), 8))
			for i := base; i < c.n; i++ {
				seen[c.folded(c.at(i))] = struct{}{}
			}
		}
		if seen != nil {
			f := c.folded(ref)
			if _, dup := seen[f]; dup {
				c.res = jsonDuplicate
				return false
			}
			seen[f] = struct{}{}
		} else {
			for i := base; i < c.n; i++ {
				if c.sameASCIIFold(c.at(i), ref) {
					c.res = jsonDuplicate
					return false
				}
			}
			c.push(ref)
		}
		c.ws()
		if c.i >= len(c.d) || c.d[c.i] != ':' {
			return false
		}
		c.i++
		c.ws()
		if !c.value(depth) {
			return false
		}
		if done, ok := c.next('}'); !ok || done {
			return ok
		}
	}
}

// sameASCIIFold reports whether two simple member names are equal but for ASCII case.
func (c *jsonChecker) sameASCIIFold(a, b nameRef) bool {
	x, y := c.d[a.start:a.end], c.d[b.start:b.end]
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if upperASCII(x[i]) != upperASCII(y[i]) {
			return false
		}
	}
	return true
}

func upperASCII(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return b - ('a' - 'A')
	}
	return b
}

// folded returns a member name decoded and mapped as jwks.CheckNoDuplicateMembers maps
// it (strings.ToUpper(strings.ToLower(s))), so that names encoding/json would match to
// the same struct field are equal. For simple names that is ASCII upper case.
func (c *jsonChecker) folded(r nameRef) string {
	raw := c.d[r.start:r.end]
	return strings.ToUpper(strings.ToLower(decodeString(raw, !r.simple && bytes.IndexByte(raw, '\\') >= 0)))
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeString returns the value of a well-formed JSON string given the bytes between its
// quotes, decoded exactly as encoding/json decodes it.
func decodeString(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		// Unreachable for strings checkJSON accepted; never match anything real.
		return "\x00invalid"
	}
	return s
}

// Iteration over the members of an object that checkJSON accepted.

type memberIter struct {
	d []byte
	i int
}

// newMemberIter starts iterating over the object that is the whole of d (which must be a
// checked JSON object).
func newMemberIter(d []byte) memberIter {
	it := memberIter{d: d}
	it.ws()
	it.i++ // '{'
	return it
}

func (it *memberIter) ws() {
	for it.i < len(it.d) {
		switch it.d[it.i] {
		case ' ', '\t', '\n', '\r':
			it.i++
		default:
			return
		}
	}
}

// next returns the next member's raw name (between its quotes), whether the name holds an
// escape, and the position of its value in d; ok is false after the last member.
func (it *memberIter) next() (name []byte, escaped bool, start, end int, ok bool) {
	it.ws()
	if it.i >= len(it.d) || it.d[it.i] == '}' {
		return nil, false, 0, 0, false
	}
	if it.d[it.i] == ',' {
		it.i++
		it.ws()
	}
	name, escaped = it.str()
	it.ws()
	it.i++ // ':'
	it.ws()
	start = it.i
	it.skip()
	return name, escaped, start, it.i, true
}

func (it *memberIter) str() ([]byte, bool) {
	start := it.i + 1
	escaped := false
	for j := start; ; j++ {
		switch it.d[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			it.i = j + 1
			return it.d[start:j], escaped
		}
	}
}

// skip consumes one checked value.
func (it *memberIter) skip() {
	depth := 0
	for {
		switch b := it.d[it.i]; {
		case b == '"':
			it.str()
		case b == '{' || b == '[':
			depth++
			it.i++
		case b == '}' || b == ']':
			depth--
			it.i++
		case depth == 0: // a scalar on its own
			for it.i < len(it.d) && !isValueEnd(it.d[it.i]) {
				it.i++
			}
		default:
			it.i++
		}
		if depth == 0 {
			return
		}
	}
}

func isValueEnd(b byte) bool {
	switch b {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// firstNonSpace returns the first byte of a checked JSON value.
func firstNonSpace(d []byte) byte {
	for _, b := range d {
		switch b {
		case ' ', '\t', '\n', '\r':
		default:
			return b
		}
	}
	return 0
}

// elemIter iterates over the elements of an array that checkJSON accepted.
type elemIter struct {
	memberIter
}

// newElemIter starts iterating over the array d[start:end] of a checked document d.
func newElemIter(d []byte, start int) elemIter {
	it := elemIter{memberIter{d: d, i: start + 1}} // past '['
	return it
}

// next returns the position of the next element; ok is false after the last one.
func (it *elemIter) next() (start, end int, ok bool) {
	it.ws()
	if it.i >= len(it.d) || it.d[it.i] == ']' {
		return 0, 0, false
	}
	if it.d[it.i] == ',' {
		it.i++
		it.ws()
	}
	start = it.i
	it.skip()
	return start, it.i, true
}
