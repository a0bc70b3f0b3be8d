package jwks

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckNoDuplicateMembers(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // "" means valid
	}{
		{"object", `{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`, ""},
		{"array", `[1,"a",{"a":[]},[[]],null,true,false,-1.5e300]`, ""},
		{"scalar", `"x"`, ""},
		{"huge number", `{"n":1e999999}`, ""},
		{"empty object", `{}`, ""},
		{"whitespace", " \t\n{ \"a\" : [ 1 , 2 ] }\n", ""},
		{"same name in sibling objects", `[{"a":1},{"a":1}]`, ""},
		{"same name at different depths", `{"a":{"a":{"a":1}}}`, ""},

		{"empty", ``, "empty document"},
		{"only whitespace", "  \n", "empty document"},
		{"top-level duplicate", `{"a":1,"a":1}`, `duplicate member name "a" at $`},
		{"nested duplicate", `{"a":{"b":1,"b":2}}`, `duplicate member name "b" at $.a`},
		{"duplicate in array element", `{"keys":[{},{"x":1,"y":2,"x":3}]}`, `duplicate member name "x" at $.keys[1]`},
		{"deep duplicate", `{"a":[[{"b":[{"c":1,"c":1}]}]]}`, `duplicate member name "c" at $.a[0][0].b[0]`},
		{"duplicate after nested value", `{"a":{"x":[1,{"y":2}]},"a":2}`, `duplicate member name "a" at $`},
		{"escaped duplicate", `{"kid":1,"\u006bid":2}`, `duplicate member name "kid"`},
		{"case variant", `{"alg":1,"ALG":2}`, `member names "alg" and "ALG" differ only in case`},
		{"kelvin sign", "{\"k\":1,\"\u212a\":2}", "differ only in case"},
		{"odd name quoted in path", `{"a b":{"c":1,"c":2}}`, `duplicate member name "c" at $["a b"]`},
		{"long name truncated", `{"` + strings.Repeat("n", 100) + `":1,"` + strings.Repeat("n", 100) + `":2}`, `"...`},
		{"trailing value", `{} {}`, "trailing data"},
		{"trailing garbage", `{}x`, "invalid JSON"},
		{"unterminated", `{"a":[1,2`, "unexpected end of document"},
		{"syntax error", `{"a":}`, "syntax error at byte offset"},
		{"bad literal", `{"a":tru}`, "invalid JSON"},
		{"invalid UTF-8", "{\"a\":\"\xc3\x28\"}", "not valid UTF-8"},
		{"missing colon", `{"a" 1}`, "invalid JSON"},
		{"non-string name", `{1:2}`, "invalid JSON"},
		{"max depth", strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth), ""},
		{"too deep", strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1), "nesting deeper than 64 levels"},
		{"too deep objects", `{"keys":[{"x5c":` + strings.Repeat(`{"a":`, MaxJSONDepth) + "1" + strings.Repeat("}", MaxJSONDepth) + `}]}`, "nesting deeper than 64 levels at $.keys[0].x5c.a.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckNoDuplicateMembers([]byte(tt.doc))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("error %v does not wrap ErrInvalidJSON", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// Syntax errors must not quote the document: it may hold key material.
func TestCheckNoDuplicateMembersDoesNotEchoInput(t *testing.T) {
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQ"
	for _, doc := range []string{
		`{"d":"` + secret + `"` + secret,
		`{"d":` + secret + `}`,
		`{"d":"` + secret + `","d":"` + secret + `"}`,
		`{"d":"` + secret + `"}` + secret,
	} {
		err := CheckNoDuplicateMembers([]byte(doc))
		if err == nil {
			t.Fatalf("accepted %s", doc)
		}
		for _, frag := range []string{secret[:6], "'c'"} {
			if strings.Contains(err.Error(), frag) {
				t.Errorf("error %q echoes input %q", err, frag)
			}
		}
	}
}
