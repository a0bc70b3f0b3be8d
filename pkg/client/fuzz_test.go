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

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseChallenges: server-controlled WWW-Authenticate values never panic, never
// loop, and a use_dpop_nonce is only reported for a DPoP challenge.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer error="invalid_token"`,
		`DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="nonce"`,
		`Basic abc==, DPoP error="x\"y"`,
		`Negotiate a87421000492aa874209af8bc028, Bearer realm="r"`,
		`error="use_dpop_nonce"`, `DPoP error="unterminated`, `,,,`, `=`, `DPoP ==`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chs := parseChallenges([]string{s})
		if wantsNonce(chs) && !strings.Contains(strings.ToLower(s), "dpop") {
			t.Fatalf("%q: a nonce request without a DPoP challenge", s)
		}
	})
}

// FuzzParseTokenResponse: a token endpoint's body never panics the parser, and a parsed
// token always has an access token and a known type.
func FuzzParseTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","token_type":"bearer","expires_in":3599,"refresh_token":"r","scope":"read"}`,
		`{"access_token":"a","token_type":"DPoP","expires_in":"600"}`,
		`{"access_token":"a","token_type":"Bearer","expires_in":1e400}`,
		`{"access_token":"a","token_type":"Bearer","expires_in":null}`,
		`[]`, `{`, `null`,
	} {
		f.Add(s)
	}
	t0 := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseTokenResponse([]byte(s), t0)
		if err != nil {
			return
		}
		if tok.AccessToken == "" || (tok.TokenType != TokenTypeBearer && tok.TokenType != TokenTypeDPoP) {
			t.Fatalf("%q: parsed %v", s, tok)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(t0) {
			t.Fatalf("%q: expiry before issuance", s)
		}
	})
}
