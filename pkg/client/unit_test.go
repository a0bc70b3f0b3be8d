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
	"maps"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct {
		in    []string
		want  []challenge
		nonce bool
	}{
		{in: []string{`Bearer error="invalid_token"`}, want: []challenge{{"Bearer", map[string]string{"error": "invalid_token"}}}},
		{
			in:    []string{`DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`},
			want:  []challenge{{"DPoP", map[string]string{"algs": "ES256 EdDSA", "error": "use_dpop_nonce", "error_description": "Resource server requires nonce in DPoP proof"}}},
			nonce: true,
		},
		{
			in: []string{`Bearer realm="api", error="invalid_token", DPoP algs="ES256", error=use_dpop_nonce`},
			want: []challenge{
				{"Bearer", map[string]string{"realm": "api", "error": "invalid_token"}},
				{"DPoP", map[string]string{"algs": "ES256", "error": "use_dpop_nonce"}},
			},
			nonce: true,
		},
		{in: []string{`Bearer`, `dpop ERROR="use_dpop_nonce"`}, want: []challenge{{"Bearer", map[string]string{}}, {"dpop", map[string]string{"error": "use_dpop_nonce"}}}, nonce: true},
		{in: []string{`Bearer error="use_dpop_nonce"`}, want: []challenge{{"Bearer", map[string]string{"error": "use_dpop_nonce"}}}}, // not a DPoP challenge
		{in: []string{`Basic abc==, DPoP error="x\"y"`}, want: []challenge{{"Basic", map[string]string{}}, {"DPoP", map[string]string{"error": `x"y`}}}},
		{in: []string{`Negotiate a87421000492aa874209af8bc028`, `DPoP error="use_dpop_nonce"`}, want: []challenge{{"Negotiate", map[string]string{}}, {"DPoP", map[string]string{"error": "use_dpop_nonce"}}}, nonce: true},
		{in: []string{`error="use_dpop_nonce"`}},
		{in: []string{`DPoP error="unterminated`}, want: []challenge{{"DPoP", map[string]string{}}}},
		{in: []string{""}},
	} {
		got := parseChallenges(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i].scheme != tc.want[i].scheme || !maps.Equal(got[i].params, tc.want[i].params) {
				t.Errorf("%q: challenge %d is %v, want %v", tc.in, i, got[i], tc.want[i])
			}
		}
		if wantsNonce(got) != tc.nonce {
			t.Errorf("%q: wantsNonce = %t", tc.in, !tc.nonce)
		}
	}
}

func TestTokenTimes(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		lifetime, at    time.Duration
		usable, due     bool
		lo, hi, u       float64
		wantRefreshFrom time.Duration
	}{
		{lifetime: 100 * time.Second, at: 0, usable: true, lo: 0.75, hi: 0.9, u: 0, wantRefreshFrom: 75 * time.Second},
		{lifetime: 100 * time.Second, at: 75 * time.Second, usable: true, due: true, lo: 0.75, hi: 0.9, u: 0, wantRefreshFrom: 75 * time.Second},
		{lifetime: 100 * time.Second, at: 89 * time.Second, usable: true, due: true, lo: 0.75, hi: 0.9, u: 0.5, wantRefreshFrom: 82500 * time.Millisecond},
		// margin = min(10 s, (100-90)/2 s) = 5 s: not sent within 5 s of expiry.
		{lifetime: 100 * time.Second, at: 95 * time.Second, due: true, lo: 0.9, hi: 0.9, u: 0, wantRefreshFrom: 90 * time.Second},
		{lifetime: time.Hour, at: 3590 * time.Second, due: true, lo: 0.75, hi: 0.9, u: 0, wantRefreshFrom: 2700 * time.Second},
		{lifetime: time.Hour, at: 3589 * time.Second, usable: true, due: true, lo: 0.75, hi: 0.9, u: 0, wantRefreshFrom: 2700 * time.Second},
	} {
		tok := &Token{AccessToken: "a", Expiry: t0.Add(tc.lifetime)}
		tok.RefreshAt = refreshTime(t0, tok.Expiry, tc.lo, tc.hi, tc.u)
		if got := tok.RefreshAt.Sub(t0); got != tc.wantRefreshFrom {
			t.Errorf("%+v: refresh after %s", tc, got)
		}
		now := t0.Add(tc.at)
		if tok.usable(now) != tc.usable || tok.due(now) != tc.due {
			t.Errorf("%+v: usable %t, due %t", tc, tok.usable(now), tok.due(now))
		}
	}
	if (&Token{AccessToken: "a"}).usable(t0.Add(1000*time.Hour)) != true {
		t.Error("a token without expiry must stay usable (a 401 refreshes it)")
	}
}

func TestParseTokenResponse(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		body    string
		ok      bool
		typ     string
		expires time.Duration
	}{
		{`{"access_token":"a","token_type":"bearer","expires_in":3599,"refresh_token":"r"}`, true, "Bearer", 3599 * time.Second},
		{`{"access_token":"a","token_type":"DPoP","expires_in":"600"}`, true, "DPoP", 600 * time.Second},
		{`{"access_token":"a","token_type":"Bearer"}`, true, "Bearer", 0},
		{`{"access_token":"a","token_type":"mac"}`, false, "", 0},
		{`{"token_type":"Bearer"}`, false, "", 0},
		{`{"access_token":"a","token_type":"Bearer","expires_in":-1}`, false, "", 0},
		{`[]`, false, "", 0},
	} {
		tok, err := ParseTokenResponse([]byte(tc.body), t0)
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v", tc.body, err)
			continue
		}
		if err != nil {
			continue
		}
		if tok.TokenType != tc.typ {
			t.Errorf("%s: type %q", tc.body, tok.TokenType)
		}
		if (tc.expires == 0) != tok.Expiry.IsZero() || (tc.expires != 0 && tok.Expiry.Sub(t0) != tc.expires) {
			t.Errorf("%s: expiry %s", tc.body, tok.Expiry)
		}
	}
}
