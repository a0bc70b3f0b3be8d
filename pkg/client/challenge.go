/*
Copyright 2026 The Keyward Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package client

import "strings"

// challenge is one WWW-Authenticate challenge (RFC 9110 §11.6.1): a scheme and its
// auth-params (names lowercased).
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges parses WWW-Authenticate header values into challenges. It is lenient
// (a malformed part ends the parse of that value) and never fails: the caller only looks
// for an error code.
func parseChallenges(values []string) []challenge {
	var out []challenge
	for _, v := range values {
		out = append(out, parseChallengeValue(v)...)
	}
	return out
}

func parseChallengeValue(s string) []challenge {
	var out []challenge
	var cur *challenge
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out
		}
		tok, rest := token(s)
		if tok == "" {
			return out
		}
		after := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(after, "=") && !isToken68Tail(after) {
			if cur == nil {
				return out // a parameter before any scheme
			}
			val, tail, ok := paramValue(strings.TrimLeft(after[1:], " \t"))
			if !ok {
				return out
			}
			cur.params[strings.ToLower(tok)] = val
			s = tail
			continue
		}
		// A new challenge: its scheme, then a token68 or auth-params.
		out = append(out, challenge{scheme: tok, params: map[string]string{}})
		cur = &out[len(out)-1]
		s = rest
		if next := strings.TrimLeft(rest, " \t"); next != "" && next[0] != ',' {
			t68, r := token(next)
			r = strings.TrimLeft(r, " \t")
			if t68 != "" && (!strings.HasPrefix(r, "=") || isToken68Tail(r)) {
				s = strings.TrimLeft(r, "=") // a token68 (and its padding): not needed here
			}
		}
	}
}

// isToken68Tail reports whether s (starting with "=") is the padding of a token68 such
// as "abc==" rather than the "=" of an auth-param: padding is only "=" characters up to
// the end or a comma.
func isToken68Tail(s string) bool {
	t := strings.TrimLeft(s, "=")
	t = strings.TrimLeft(t, " \t")
	return t == "" || t[0] == ','
}

// token splits a leading RFC 9110 token off s.
func token(s string) (string, string) {
	i := 0
	for i < len(s) && isTChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isTChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/", c) >= 0 // "/" admits token68 characters
}

// paramValue reads a token or a quoted-string.
func paramValue(s string) (val, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		v, r := token(s)
		return v, r, v != ""
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

// wantsNonce reports whether a 401's challenges ask for a DPoP nonce (RFC 9449 §9).
func wantsNonce(chs []challenge) bool {
	for _, c := range chs {
		if strings.EqualFold(c.scheme, "DPoP") && c.params["error"] == "use_dpop_nonce" {
			return true
		}
	}
	return false
}
