package jwks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidJSON is wrapped by every error CheckNoDuplicateMembers returns.
var ErrInvalidJSON = errors.New("invalid JSON")

// MaxJSONDepth is the deepest nesting of objects and arrays that
// CheckNoDuplicateMembers accepts. A JWK Set needs 3 levels; the limit keeps
// hostile input from making the check expensive.
const MaxJSONDepth = 64

// CheckNoDuplicateMembers returns nil if data is exactly one well-formed UTF-8
// JSON value in which no object has two members with the same name, and an
// error wrapping ErrInvalidJSON otherwise.
//
// Because encoding/json matches struct fields case-insensitively, member names
// that differ only in case ("kid" and "KID") are rejected too: different JSON
// parsers would otherwise disagree on which one wins. Documents nested deeper
// than MaxJSONDepth are rejected.
//
// Errors name the offending member and its location ($.keys[0]), never the
// values in the document, so they are safe to log even when the document holds
// key material. Syntax errors report only the byte offset.
func CheckNoDuplicateMembers(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()

	var stack []*jsonFrame
	started := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !started {
				return fmt.Errorf("%w: empty document", ErrInvalidJSON)
			}
			if len(stack) != 0 {
				return fmt.Errorf("%w: unexpected end of document", ErrInvalidJSON)
			}
			return nil
		}
		if err != nil {
			return syntaxError(err, dec)
		}
		if started && len(stack) == 0 {
			return fmt.Errorf("%w: trailing data after the top-level value at byte offset %d", ErrInvalidJSON, dec.InputOffset())
		}
		started = true

		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}

		// A member name inside an object.
		if top != nil && top.object && top.expectName {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				valueDone(stack)
				continue
			}
			name, ok := tok.(string)
			if !ok { // encoding/json already guarantees this; stay defensive.
				return fmt.Errorf("%w: expected a member name at %s", ErrInvalidJSON, jsonPath(stack))
			}
			if _, dup := top.names[name]; dup {
				return fmt.Errorf("%w: duplicate member name %s at %s", ErrInvalidJSON, quoteName(name), jsonPath(stack))
			}
			folded := foldName(name)
			if other, dup := top.folded[folded]; dup {
				return fmt.Errorf("%w: member names %s and %s differ only in case at %s",
					ErrInvalidJSON, quoteName(other), quoteName(name), jsonPath(stack))
			}
			top.names[name] = struct{}{}
			top.folded[folded] = name
			top.name = name
			top.expectName = false
			continue
		}

		// A value (or the end of an array).
		switch d := tok.(type) {
		case json.Delim:
			if (d == '{' || d == '[') && len(stack) >= MaxJSONDepth {
				return fmt.Errorf("%w: nesting deeper than %d levels at %s", ErrInvalidJSON, MaxJSONDepth, jsonPath(stack))
			}
			switch d {
			case '{':
				stack = append(stack, &jsonFrame{
					object:     true,
					expectName: true,
					names:      map[string]struct{}{},
					folded:     map[string]string{},
				})
			case '[':
				stack = append(stack, &jsonFrame{})
			case ']':
				stack = stack[:len(stack)-1]
				valueDone(stack)
			default: // '}' is handled above; encoding/json rejects it elsewhere.
				return fmt.Errorf("%w: unexpected %q at %s", ErrInvalidJSON, rune(d), jsonPath(stack))
			}
		default:
			valueDone(stack)
		}
	}
}

type jsonFrame struct {
	object     bool
	expectName bool
	name       string // current member name (objects)
	index      int    // current element index (arrays)
	names      map[string]struct{}
	folded     map[string]string
}

// valueDone records that the current member value / array element of the
// innermost container is complete.
func valueDone(stack []*jsonFrame) {
	if len(stack) == 0 {
		return
	}
	f := stack[len(stack)-1]
	if f.object {
		f.expectName = true
	} else {
		f.index++
	}
}

// jsonPath renders the location of the innermost container's current member.
func jsonPath(stack []*jsonFrame) string {
	var b strings.Builder
	b.WriteString("$")
	for i, f := range stack {
		last := i == len(stack)-1
		if f.object {
			if last && f.expectName {
				break
			}
			if isSimpleName(f.name) {
				b.WriteString(".")
				b.WriteString(f.name)
			} else {
				b.WriteString("[")
				b.WriteString(quoteName(f.name))
				b.WriteString("]")
			}
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	return b.String()
}

// isSimpleName reports whether a member name is a short identifier that can
// be shown unquoted.
func isSimpleName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r == '-' || r == '#' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// quoteName renders a member name for an error message: Go-quoted, and
// truncated when long.
func quoteName(name string) string {
	const maxLen = 64
	if len(name) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		return strconv.Quote(name[:cut]) + "..."
	}
	return strconv.Quote(name)
}

// foldName maps names that encoding/json would consider equal when matching
// struct fields (simple Unicode case folding) to the same string.
func foldName(s string) string {
	return strings.ToUpper(strings.ToLower(s))
}

func syntaxError(err error, dec *json.Decoder) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: syntax error at byte offset %d", ErrInvalidJSON, se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of document", ErrInvalidJSON)
	}
	// Do not echo the decoder's message: some of them quote input bytes.
	return fmt.Errorf("%w: malformed document near byte offset %d", ErrInvalidJSON, dec.InputOffset())
}
